"""The report's tests, each a call of the tested library: leakage, ablation, shuffle, permutation,
multiple testing and return attribution."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from himari_pipeline.datasets.splits import DatasetSplits
from himari_pipeline.evaluation.attribution import Attribution, attribute_returns
from himari_pipeline.evaluation.leakage import feature_return_correlations, input_ablation, next_returns
from himari_pipeline.evaluation.metrics import sharpe_ratio
from himari_pipeline.evaluation.replay import Replay
from himari_pipeline.evaluation.report.segments import SegmentRun
from himari_pipeline.evaluation.significance import (
    PermutationResult,
    deflated_sharpe_ratio,
    per_bar_sharpes,
    permutation_pvalue,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)
from himari_pipeline.evaluation.verdict import suspicious_features
from himari_pipeline.rl.policy import RegimeConditionedPolicy
from himari_pipeline.trading.rules import TradingRules
from himari_pipeline.vocabulary import ACTIONS, N_REGIMES

__all__ = [
    "LeakageProbe",
    "MultipleTesting",
    "Trial",
    "attribution_by_segment",
    "multiple_testing",
    "policy_ablation",
    "probe_leakage",
    "shuffle_sharpes",
    "permutation_of_test",
]

LEAK_SEGMENTS: tuple[str, ...] = ("train", "val", "test")  # never live


@dataclass
class LeakageProbe:
    """Every raw and denoised feature at ``t`` against ``r[t+1]`` on train+val+test."""

    table: pd.DataFrame  # feature_return_correlations + abs_max, largest |corr| first
    suspicious: dict[str, float]  # beyond the leak bar: Pearson correlation per feature
    truncation: dict[str, bool]  # upstream truncation-invariance results passed in

    @property
    def threshold(self) -> float:
        return float(self.table["threshold"].iloc[0])

    @property
    def n_obs(self) -> int:
        return int(self.table["n"].iloc[0])

    @property
    def max_abs_corr(self) -> float:
        return float(self.table["abs_max"].max())

    @property
    def correlations(self) -> dict[str, dict[str, float]]:
        return {
            str(k): {"pearson": float(r["pearson"]), "spearman": float(r["spearman"])}
            for k, r in self.table.iterrows()
        }


def probe_leakage(
    splits: DatasetSplits, max_abs_corr: float, truncation_results: Mapping[str, bool] | None
) -> LeakageProbe:
    names = [f"raw_{f}" for f in splits.feature_names] + [f"den_{f}" for f in splits.feature_names]
    segs = [n for n in LEAK_SEGMENTS if n in splits.splits]
    x = np.concatenate([np.hstack([splits[n].features_raw, splits[n].features_denoised]) for n in segs])
    y = np.concatenate([next_returns(splits[n].returns) for n in segs])
    corr = feature_return_correlations(x, names, y, suspicious_abs_corr=max_abs_corr)
    worst = np.maximum(corr["pearson"].abs(), corr["spearman"].abs())
    corr = corr.assign(abs_max=worst).sort_values("abs_max", ascending=False)
    probe = LeakageProbe(corr, {}, {str(k): bool(v) for k, v in (truncation_results or {}).items()})
    probe.suspicious = suspicious_features(probe.correlations, max_abs_corr)
    return probe


def policy_ablation(policy: RegimeConditionedPolicy, n_features: int, seed: int, batch: int) -> pd.DataFrame:
    """The greedy action mix on all-zeros, noise and all-ones windows (regimes spread evenly, flat)."""
    ctx = policy.cfg.context

    @torch.no_grad()
    def act(xb: np.ndarray) -> np.ndarray:
        b = xb.shape[0]
        reg = torch.arange(b)[:, None].expand(b, ctx) % N_REGIMES
        logits, _ = policy.forward_windows(
            torch.from_numpy(xb), reg, torch.zeros(b, policy.cfg.position_state_dim)
        )
        return logits.argmax(-1).numpy()

    return input_ablation(act, (ctx, n_features), seed=seed, batch=batch, action_names=ACTIONS)


def shuffle_sharpes(replays: Mapping[str, Replay], n_shuffles: int, bars_per_year: float) -> np.ndarray:
    """Annualized net Sharpe of the replays ``shuffle_1 .. shuffle_n``."""
    return np.array(
        [sharpe_ratio(replays[f"shuffle_{i + 1}"].net_return, bars_per_year) for i in range(n_shuffles)]
    )


def permutation_of_test(
    test: SegmentRun,
    test_returns: np.ndarray,
    costs: TradingRules,
    bars_per_year: float,
    *,
    n_perm: int,
    block: int,
    seed: int,
) -> PermutationResult:
    """Block permutation p-value of the policy's test positions (returns from its first decision)."""
    returns = np.r_[0.0, np.asarray(test_returns, dtype=np.float64)[test.t0 + 1 :]]
    return permutation_pvalue(
        test.policy.positions, returns, costs, bars_per_year, n_perm=n_perm, block=block, seed=seed
    )


@dataclass(frozen=True)
class Trial:
    """One checkpoint the selection chose among, with its validation replay."""

    name: str
    step: int
    replay: Replay


@dataclass
class MultipleTesting:
    trials: pd.DataFrame  # per checkpoint: step, per-bar and annualized validation Sharpe, selected
    n_trials: int
    psr: float
    psr_test: float
    dsr: float
    pbo: float
    pbo_note: str = ""


def _safe(fn: Callable[..., float], *args, **kwargs) -> float:
    try:
        return float(fn(*args, **kwargs))
    except ValueError:
        return float("nan")


def multiple_testing(
    selected: Trial,
    others: list[Trial],
    test_net_returns: np.ndarray,
    *,
    n_trials: int,
    trial_spread_known: bool,
    pbo_blocks: int,
    bars_per_year: float,
) -> MultipleTesting:
    """PSR, DSR and PBO of the selection over the trials' per-bar validation returns (and the PSR of
    the selection's net returns on test).

    ``trial_spread_known=False`` (a strategy: one series of ``n_trials`` variants) deflates with the
    null's sampling variance instead of the trials' Sharpes.
    """
    m_len = len(selected.replay.net_return)
    cols = {selected.name: selected.replay.net_return}
    for t in others:
        cols[t.name] = np.pad(t.replay.net_return, (0, m_len - len(t.replay.net_return)))
    steps = {selected.name: selected.step, **{t.name: t.step for t in others}}
    matrix = np.column_stack(list(cols.values()))
    trial_sr = per_bar_sharpes(matrix)
    sel_ret = selected.replay.net_return
    psr = _safe(probabilistic_sharpe_ratio, sel_ret)
    dsr = _safe(deflated_sharpe_ratio, sel_ret, trial_sr, n_trials)
    if not trial_spread_known and n_trials > 1:
        dsr = _safe(deflated_sharpe_ratio, sel_ret, None, n_trials)
    pbo, note = float("nan"), ""
    if matrix.shape[1] >= 2 and matrix.shape[0] >= 2 * pbo_blocks:
        pbo = probability_of_backtest_overfitting(matrix, pbo_blocks).pbo
    else:
        note = f" PBO needs at least 2 checkpoints and {2 * pbo_blocks} bars; it is not defined here."
    trials = pd.DataFrame(
        {
            "step": [steps[k] for k in cols],
            "val_sharpe_per_bar": trial_sr,
            "val_sharpe": trial_sr * math.sqrt(bars_per_year),
            "selected": [k == selected.name for k in cols],
        },
        index=pd.Index(list(cols), name="checkpoint"),
    ).sort_values("step")
    return MultipleTesting(
        trials, n_trials, psr, _safe(probabilistic_sharpe_ratio, test_net_returns), dsr, pbo, note
    )


def attribution_by_segment(runs: Mapping[str, SegmentRun], splits: DatasetSplits) -> dict[str, Attribution]:
    """Market exposure vs timing of the policy in every segment (keyed by section name)."""
    return {
        run.section: attribute_returns(
            run.policy.exposure,
            np.asarray(splits[n].returns, dtype=np.float64)[run.t0 + 1 :],
            run.policy.costs,
        )
        for n, run in runs.items()
    }
