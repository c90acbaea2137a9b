"""Per-segment runs: greedy replays of the judged policy and the backtests of it and its baselines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from himari_pipeline.datasets.splits import DatasetSplits, SplitArrays
from himari_pipeline.evaluation.backtest import BacktestResult
from himari_pipeline.evaluation.baselines import subject_backtests
from himari_pipeline.evaluation.leakage import shuffle_orders
from himari_pipeline.evaluation.metrics import compute_stats, stats_by_group
from himari_pipeline.evaluation.replay import Replay, replay_greedy
from himari_pipeline.rl.env import EnvConfig
from himari_pipeline.rl.policy import RegimeConditionedPolicy
from himari_pipeline.trading.rules import TradingRules
from himari_pipeline.vocabulary import ACTIONS, action_shares, regime_name

__all__ = [
    "REQUIRED",
    "GapHolds",
    "SECTION_OF_SPLIT",
    "SEGMENTS",
    "SegmentRun",
    "regime_names",
    "replay_selected",
    "run_segments",
    "shares_by_regime",
]

SEGMENTS: tuple[str, ...] = ("train", "val", "test", "live")
REQUIRED: tuple[str, ...] = ("val", "test", "live")
#: The report's (and the metrics table's) name of each split.
SECTION_OF_SPLIT = {"train": "train", "val": "validation", "test": "test", "live": "live"}


def regime_names(ids: np.ndarray) -> dict[int, str]:
    """``{regime id: name}`` of the ids present (``WARMUP`` for the warm-up id)."""
    return {int(i): regime_name(int(i)) for i in np.unique(ids)}


def shares_by_regime(actions: np.ndarray, regimes: np.ndarray) -> pd.DataFrame:
    """Decisions and action shares overall (``ALL``) and per regime known at each decision."""
    rows = {"ALL": action_shares(actions)}
    for rid, name in regime_names(regimes).items():
        sel = regimes == rid
        rows[name] = {**action_shares(actions[sel]), "bars": float(sel.sum())}
    rows["ALL"]["bars"] = float(len(actions))
    return pd.DataFrame.from_dict(rows, orient="index")[["bars", *ACTIONS]]


@dataclass(frozen=True)
class GapHolds:
    """The policy's decisions that held a position across missing bars, and those steps' P&L."""

    decisions: int
    pnl: float  # sum of the steps' net returns (not compounded)

    @property
    def sentence(self) -> str:
        return (
            f"{self.decisions} decision(s) held a position across missing bars; the net P&L of those "
            f"steps: {self.pnl:+.4f} (sum of per-step returns)."
        )


@dataclass
class SegmentRun:
    """One segment from its first decision row ``t0``: the replay and every subject's backtest."""

    name: str
    t0: int
    replay: Replay
    timestamps: np.ndarray  # int64 ns UTC, rows t0 .. n-1
    regimes: np.ndarray
    results: dict[str, BacktestResult]
    stats: dict[str, dict[str, float]]
    by_regime: dict[str, pd.DataFrame]

    @property
    def policy(self) -> BacktestResult:
        return self.results["policy"]

    @property
    def section(self) -> str:
        return SECTION_OF_SPLIT[self.name]

    @property
    def action_shares(self) -> dict[str, float]:
        return action_shares(self.replay.action)

    def shares_by_regime(self) -> pd.DataFrame:
        return shares_by_regime(self.replay.action, self.regimes[: len(self.replay.action)])

    @property
    def gap_holds(self) -> GapHolds:
        held = self.policy.held_across_gaps
        return GapHolds(int(held.sum()), float(self.policy.net_returns[held].sum()))


def run_segment(
    name: str, split: SplitArrays, replay: Replay, costs: TradingRules, bars_per_year: float, seed: int
) -> SegmentRun:
    """Backtests of the policy and the baselines over the replayed rows (decision rows only)."""
    t0, n = int(replay.t[0]), split.n_samples
    direction = np.zeros(n)
    if replay.direction is not None:
        direction[replay.t] = replay.direction[: len(replay.t)]
    else:
        direction[replay.t] = np.sign(replay.position)
    sl = slice(t0, n)
    ret = np.asarray(split.returns, dtype=np.float64)[sl].copy()
    ret[0] = 0.0  # never earned (the first step earns ret[1])
    prices = np.asarray(split.prices, dtype=np.float64)
    gaps = np.asarray(split.gap_before, dtype=np.int64)[sl]
    results = subject_backtests(prices, ret, direction[sl], costs, bars_per_year, seed, gap_before=gaps)
    ts = pd.to_datetime(np.asarray(split.timestamps)[sl], utc=True)
    regimes = np.asarray(split.regime_ids)[sl]
    names = regime_names(regimes)
    stats = {s: compute_stats(res, bars_per_year, ts) for s, res in results.items()}
    by_regime = {s: stats_by_group(res, regimes, names, bars_per_year) for s, res in results.items()}
    return SegmentRun(name, t0, replay, ts.asi8, regimes, results, stats, by_regime)


def run_segments(
    splits: DatasetSplits, replays: dict[str, Replay], costs: TradingRules, bars_per_year: float, seed: int
) -> dict[str, SegmentRun]:
    """Every segment both the splits and the replays have (val, test and live are required)."""
    names = [n for n in SEGMENTS if n in splits.splits and n in replays]
    for need in REQUIRED:
        if need not in names:
            raise ValueError(f"no {need!r} segment to evaluate")
    return {n: run_segment(n, splits[n], replays[n], costs, bars_per_year, seed) for n in names}


def _series(split: SplitArrays, features_key: str) -> tuple[np.ndarray, ...]:
    """What the replay steps through: features, regimes, returns and the bars missing before each."""
    return (
        split[features_key],
        split.regime_ids,
        split.returns,
        np.asarray(split.gap_before, dtype=np.int64),
    )


def replay_selected(
    policy: RegimeConditionedPolicy,
    splits: DatasetSplits,
    features_key: str,
    env_cfg: EnvConfig,
    *,
    n_shuffles: int,
    shuffle_block: int,
    seed: int,
) -> dict[str, Replay]:
    """Greedy replays of one policy on every segment and on ``shuffle_1..n`` copies of test.

    A shuffled copy permutes the test rows (features, regimes and returns together) in blocks of
    ``shuffle_block`` (:func:`~himari_pipeline.evaluation.leakage.shuffle_orders`).
    """
    names = [n for n in SEGMENTS if n in splits.splits]
    for need in REQUIRED:
        if need not in names:
            raise ValueError(f"splits have no {need!r} split")
    series = [_series(splits[n], features_key) for n in names]
    test = splits["test"]
    for order in shuffle_orders(test.n_samples, n_shuffles, seed, shuffle_block):
        series.append(
            (
                np.asarray(test[features_key])[order],
                np.asarray(test.regime_ids)[order],
                np.nan_to_num(np.asarray(test.returns, dtype=np.float64)[order]),
                np.asarray(test.gap_before, dtype=np.int64)[order],
            )
        )
    keys = [*names, *[f"shuffle_{i + 1}" for i in range(n_shuffles)]]
    return dict(zip(keys, replay_greedy([policy] * len(series), series, env_cfg), strict=True))


def replay_on_validation(
    policies: Sequence[RegimeConditionedPolicy], splits: DatasetSplits, features_key: str, env_cfg: EnvConfig
) -> list[Replay]:
    """Greedy replays of several policies on the validation segment (the trials of the selection)."""
    if not policies:
        return []
    series = _series(splits["val"], features_key)
    return replay_greedy(list(policies), [series] * len(policies), env_cfg)
