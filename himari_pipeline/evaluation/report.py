"""The validation report of one training run: every test lab log 000 ran on "Experiment 9", done right.

:func:`build_validation_report` judges the checkpoint the run selected on VALIDATION (its best
pointer; never the best on test) and collects the evidence :func:`~himari_pipeline.evaluation.judge`
needs, in seven sections:

1. validation / test evaluation, overall and per regime, with the action mix per regime and the
   baselines (buy-and-hold, flat, MA crossover, random with the same turnover) net of the same costs;
2. leakage: correlation of every raw and denoised feature at ``t`` with ``r[t+1]`` on train+val+test
   (never live), the chance threshold, flagged rows, and the upstream truncation-invariance results;
3. zero / noise / all-ones inputs: the policy's action mix on constant windows (log 000);
4. shuffle: (a) the policy re-run on time-shuffled test bars, (b) the block permutation p-value;
5. the live year: equity vs buy-and-hold, metrics, action drift training -> live, per regime;
6. multiple testing: PSR and DSR of the selection over every checkpoint the run evaluated, and PBO;
7. the verdict with reasons and warnings.

**Leakage gate** (not in :class:`Gates`, applied here after ``judge``): the verdict FAILS when any
feature's |Pearson| or |Spearman| correlation with ``r[t+1]`` exceeds ``leak_max_abs_corr`` (0.3) or
any truncation-invariance result passed in is False (check ``leakage`` in ``verdict.checks``).

The greedy replay of checkpoints lives in :mod:`~himari_pipeline.evaluation.replay`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from himari_pipeline.datasets.splits import DatasetSplits, SplitArrays
from himari_pipeline.evaluation import html as html_mod
from himari_pipeline.evaluation import report_plots
from himari_pipeline.evaluation.attribution import attribute_returns
from himari_pipeline.evaluation.backtest import BacktestResult, CostModel, backtest
from himari_pipeline.evaluation.baselines import ma_crossover_positions, random_positions_like
from himari_pipeline.evaluation.leakage import feature_return_correlations, input_ablation, next_returns
from himari_pipeline.evaluation.metrics import compute_stats, sharpe_ratio, stats_by_group
from himari_pipeline.evaluation.replay import Replay, costs_from_experiment, replay_greedy
from himari_pipeline.evaluation.significance import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    per_bar_sharpes,
    permutation_pvalue,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)
from himari_pipeline.evaluation.verdict import Gates, Verdict, judge, total_variation
from himari_pipeline.rl.checkpoints import (
    BEST_FILE,
    META_FILE,
    WeightsCatalog,
    best_checkpoint,
    load_checkpoint,
)
from himari_pipeline.rl.env import EnvConfig
from himari_pipeline.rl.experiments import Experiment
from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy
from himari_pipeline.vocabulary import REGIMES

__all__ = [
    "ACTIONS",
    "METRICS_COLUMNS",
    "SUBJECTS",
    "SUMMARY_COLUMNS",
    "Plot",
    "StrategySubject",
    "Replay",
    "Section",
    "ValidationReport",
    "apply_leakage_gate",
    "build_validation_report",
    "costs_from_experiment",
    "replay_greedy",
    "resolve_checkpoints",
]

ACTIONS: tuple[str, ...] = ("flat", "long", "short")  # action ids 0, 1, 2
#: Columns of the per-regime policy tables shown in the report.
REGIME_TABLE_COLUMNS: tuple[str, ...] = (
    "bars",
    "share_of_bars",
    "sharpe",
    "cumulative_return",
    "long_share",
    "short_share",
    "flat_share",
)
SUBJECTS: tuple[str, ...] = ("policy", "buy_and_hold", "flat", "ma_crossover", "random_same_turnover")
SECTION_OF_SPLIT = {"train": "train", "val": "validation", "test": "test", "live": "live"}
METRICS_COLUMNS: tuple[str, ...] = (
    "experiment",
    "dataset",
    "checkpoint_step",
    "section",
    "subject",
    "regime",
    "metric",
    "value",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "experiment",
    "dataset",
    "checkpoint_step",
    "verdict",
    "reasons",
    "warnings",
    "n_checkpoints",
    "val_sharpe",
    "test_sharpe",
    "live_sharpe",
    "live_bh_sharpe",
    "live_max_drawdown",
    "live_final_value",
    "psr",
    "dsr",
    "pbo",
    "perm_pvalue",
    "leak_flags",
    "report_path",
    "bars_per_year",
)


# --------------------------------------------------------------------------- document model
@dataclass(frozen=True)
class Plot:
    caption: str
    png: bytes
    name: str = ""  # its key in the asset's metadata (plot_<name>)


@dataclass
class Section:
    """A report section: blocks of text (tiny Markdown), tables (DataFrames) and plots, in order."""

    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Section:
        self.blocks.extend(blocks)
        return self

    @property
    def plots(self) -> list[Plot]:
        return [b for b in self.blocks if isinstance(b, Plot)]

    @property
    def tables(self) -> list[pd.DataFrame]:
        return [b for b in self.blocks if isinstance(b, pd.DataFrame)]

    @property
    def markdown(self) -> str:
        out = [f"## {self.title}"]
        for b in self.blocks:
            if isinstance(b, str):
                out.append(b.strip())
            elif isinstance(b, pd.DataFrame):
                out.append(b.to_markdown(floatfmt=".4g"))
            else:
                out.append(f"*(plot in the HTML report: {b.caption})*")
        return "\n\n".join(out)


# --------------------------------------------------------------------------- checkpoints
@dataclass
class _Loaded:
    path: Path
    meta: dict
    policy: RegimeConditionedPolicy

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def env_cfg(self) -> EnvConfig:
        return EnvConfig(**self.meta["env_config"])

    @property
    def features_key(self) -> str:
        return self.meta.get("features_key", "features_denoised")


def _load(path: Path) -> _Loaded:
    ck = load_checkpoint(path)
    policy = RegimeConditionedPolicy(PolicyConfig.from_dict(ck.meta["policy_config"]))
    policy.load_state_dict(ck.model, strict=True)
    policy.eval()
    return _Loaded(Path(path), ck.meta, policy)


def _meta(path: Path) -> dict:
    return json.loads((Path(path) / META_FILE).read_text())


def _selection(meta: dict) -> tuple[str, str]:
    ppo = meta.get("ppo_config", {})
    return ppo.get("select_metric", "greedy_sharpe"), ppo.get("select_mode", "max")


def resolve_checkpoints(
    run_dir_or_checkpoints: str | Path | Sequence[str | Path],
) -> tuple[Path, list[Path], int]:
    """(selected, evaluated checkpoints, number of trials) of a run directory or a list of checkpoints.

    A run directory's selection is its best pointer (``best.json``: best by validation). A list is
    judged by each checkpoint's recorded validation selection metric, never by anything else.
    Evaluated = checkpoints whose JSON holds validation metrics; the number of trials is at least the
    length of the run's evaluation history (checkpoints deleted since still count).
    """
    if (
        isinstance(run_dir_or_checkpoints, str | Path)
        and not (Path(run_dir_or_checkpoints) / META_FILE).is_file()
    ):
        run = Path(run_dir_or_checkpoints)
        if not (run / BEST_FILE).is_file():
            raise FileNotFoundError(f"{run}: no {BEST_FILE} (no validated checkpoint to judge)")
        selected = best_checkpoint(run)
        candidates = sorted(p for p in run.glob("step_*") if (p / META_FILE).is_file())
    else:
        items = (
            [run_dir_or_checkpoints]
            if isinstance(run_dir_or_checkpoints, str | Path)
            else list(run_dir_or_checkpoints)
        )
        candidates = sorted(Path(p) for p in items)
        selected = None
    metas = {p: _meta(p) for p in candidates}
    evaluated = [p for p in candidates if metas[p].get("metrics")]
    if selected is None:
        if not evaluated:
            raise ValueError("none of the checkpoints carries validation metrics to select by")
        metric, mode = _selection(metas[evaluated[0]])
        sign = 1.0 if mode == "max" else -1.0

        def score(p: Path) -> float:
            v = metas[p]["metrics"].get(metric)
            return sign * float(v) if v is not None and math.isfinite(float(v)) else -math.inf

        selected = max(evaluated, key=score)
    if selected not in evaluated:
        evaluated.append(selected)
    history = max((len(m.get("eval_history", [])) for m in metas.values()), default=0)
    return Path(selected), sorted(evaluated), max(len(evaluated), history)


@dataclass
class StrategySubject:
    """A strategy's positions in place of a checkpoint (see :mod:`~himari_pipeline.evaluation.strategy`)."""

    name: str
    dataset: str
    replays: dict[str, Replay]  # per segment, from Replay rows 0 .. n-2
    n_trials: int = 1  # variants the user tried (counted by the Deflated Sharpe)
    source: str = ""  # the positions file


@dataclass
class _SplitRun:
    name: str
    t0: int
    replay: Replay
    timestamps: np.ndarray
    regimes: np.ndarray
    results: dict[str, BacktestResult]
    stats: dict[str, dict[str, float]]
    by_regime: dict[str, pd.DataFrame]

    @property
    def policy(self) -> BacktestResult:
        return self.results["policy"]


def _regime_names(ids: np.ndarray) -> dict[int, str]:
    return {int(i): (REGIMES[int(i)] if 0 <= int(i) < len(REGIMES) else "WARMUP") for i in np.unique(ids)}


def _split_run(
    name: str, split: SplitArrays, replay: Replay, costs: CostModel, bars_per_year: float, seed: int
) -> _SplitRun:
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
    pol = direction[sl]
    m = n - t0
    runs = {
        "policy": pol,
        "buy_and_hold": np.ones(m),
        "flat": np.zeros(m),
        "ma_crossover": ma_crossover_positions(np.asarray(split.prices, dtype=np.float64))[sl],
        "random_same_turnover": random_positions_like(pol, seed),
    }
    ts = pd.to_datetime(np.asarray(split.timestamps)[sl], utc=True)
    regimes = np.asarray(split.regime_ids)[sl]
    names = _regime_names(regimes)
    results, stats, by_regime = {}, {}, {}
    for subject, pos in runs.items():
        res = backtest(pos, ret, costs, bars_per_year)
        results[subject] = res
        stats[subject] = compute_stats(res, bars_per_year, ts)
        by_regime[subject] = stats_by_group(res, regimes, names, bars_per_year)
    return _SplitRun(name, t0, replay, ts.asi8, regimes, results, stats, by_regime)


def _shares(actions: np.ndarray) -> dict[str, float]:
    counts = np.bincount(np.asarray(actions, dtype=np.int64), minlength=3)[:3]
    return {a: float(c / max(counts.sum(), 1)) for a, c in zip(ACTIONS, counts, strict=True)}


def _shares_by_regime(actions: np.ndarray, regimes: np.ndarray) -> pd.DataFrame:
    rows = {"ALL": _shares(actions)}
    for rid, name in _regime_names(regimes).items():
        sel = regimes == rid
        rows[name] = {**_shares(actions[sel]), "bars": float(sel.sum())}
    rows["ALL"]["bars"] = float(len(actions))
    return pd.DataFrame.from_dict(rows, orient="index")[["bars", *ACTIONS]]


# --------------------------------------------------------------------------- the report
@dataclass
class ValidationReport:
    experiment: str
    dataset: str
    checkpoint_step: int
    checkpoint_path: str
    evidence: dict
    verdict: Verdict
    sections: list[Section]
    metrics: pd.DataFrame  # long format rows (section, subject, regime, metric, value)
    n_checkpoints: int
    bars_per_year: float
    report_path: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def section(self, title_prefix: str) -> Section:
        for s in self.sections:
            if s.title.startswith(title_prefix):
                return s
        raise KeyError(title_prefix)

    def tables(self, report_path: str | None = None) -> dict[str, pd.DataFrame]:
        """``validation_metrics`` and ``validation_summary`` with exactly the contract's columns."""
        ident = {
            "experiment": self.experiment,
            "dataset": self.dataset,
            "checkpoint_step": self.checkpoint_step,
        }
        vm = self.metrics.assign(**ident)[list(METRICS_COLUMNS)].reset_index(drop=True)
        vm = vm.astype({"checkpoint_step": "int64", "value": "float64"})
        for c in ("experiment", "dataset", "section", "subject", "regime", "metric"):
            vm[c] = vm[c].astype(str)
        ev = self.evidence

        def num(key: str) -> float:
            v = ev.get(key)
            return float(v) if isinstance(v, int | float | np.floating | np.integer) else float("nan")

        row = {
            **ident,
            "verdict": "PASS" if self.verdict.passed else "FAIL",
            "reasons": "; ".join(self.verdict.reasons),
            "warnings": "; ".join(self.verdict.warnings),
            "n_checkpoints": self.n_checkpoints,
            "val_sharpe": num("validation_sharpe"),
            "test_sharpe": num("test_sharpe"),
            "live_sharpe": num("live_sharpe"),
            "live_bh_sharpe": num("live_buy_and_hold_sharpe"),
            "live_max_drawdown": num("live_max_drawdown"),
            "live_final_value": num("live_final_value"),
            "psr": num("psr"),
            "dsr": num("dsr"),
            "pbo": num("pbo"),
            "perm_pvalue": num("permutation_p"),
            "leak_flags": int(ev.get("leak_flags", 0)),
            "report_path": report_path if report_path is not None else self.report_path,
            "bars_per_year": float(self.bars_per_year),
        }
        vs = pd.DataFrame([row], columns=list(SUMMARY_COLUMNS)).astype(
            {"checkpoint_step": "int64", "n_checkpoints": "int64", "leak_flags": "int64"}
        )
        return {"validation_metrics": vm, "validation_summary": vs}

    @property
    def title(self) -> str:
        if self.experiment.startswith("strategy:"):
            return f"Validation report: {self.experiment} on {self.dataset} (positions file)"
        return (
            f"Validation report: {self.experiment} on {self.dataset} (checkpoint step {self.checkpoint_step})"
        )

    def to_markdown(self) -> str:
        v = self.verdict
        head = [f"# {self.title}", f"**Verdict: {'PASS' if v.passed else 'FAIL'}**"]
        head += [f"- {r}" for r in v.reasons]
        head += [f"- warning: {w}" for w in v.warnings]
        return "\n\n".join(["\n".join(head[:2]), "\n".join(head[2:])] + [s.markdown for s in self.sections])

    def to_html(self) -> str:
        v = self.verdict
        meta = f"checkpoint {self.checkpoint_path}; {self.n_checkpoints} checkpoints evaluated"
        if self.experiment.startswith("strategy:"):
            meta = f"positions {Path(self.checkpoint_path).name}; {self.n_checkpoints} variant(s) tried"
        return html_mod.render_html(self.title, v.passed, v.reasons, v.warnings, self.sections, meta)

    def write_html(self, path: str | Path) -> Path:
        out = html_mod.write_text_atomic(path, self.to_html())
        self.report_path = str(path)
        return out


def _fmt_shares(s: Mapping[str, float]) -> str:
    return " / ".join(f"{a} {s[a]:.1%}" for a in ACTIONS)


def _metric_rows(section: str, subject: str, regime: str, values: Mapping[str, float]) -> list[tuple]:
    return [(section, subject, regime, k, float(v)) for k, v in values.items()]


def apply_leakage_gate(verdict: Verdict, evidence: Mapping, max_abs_corr: float = 0.3) -> Verdict:
    """Add the ``leakage`` gate to a verdict: FAIL on any |corr| > ``max_abs_corr`` or failed truncation."""
    reasons = []
    sus = evidence.get("leak_suspicious_features") or {}
    if sus:
        worst = ", ".join(f"{k} ({v:+.2f})" for k, v in list(sus.items())[:5])
        reasons.append(
            f"leakage: {len(sus)} feature(s) correlate with r[t+1] beyond |corr| {max_abs_corr}: {worst}"
        )
    failed = [k for k, ok in (evidence.get("truncation_results") or {}).items() if not ok]
    if failed:
        reasons.append(f"leakage: truncation invariance failed for {', '.join(failed)}")
    verdict.checks["leakage"] = not reasons
    verdict.reasons.extend(reasons)
    verdict.passed = not verdict.reasons
    return verdict


def build_validation_report(
    run_dir_or_checkpoints: str | Path | Sequence[str | Path],
    splits: DatasetSplits,
    experiment: Experiment | None,
    *,
    bars_per_year: float,
    costs: CostModel | None = None,
    truncation_results: Mapping[str, bool] | None = None,
    gates: Gates | None = None,
    n_perm: int = 1000,
    perm_block: int = 100,
    n_shuffles: int = 5,
    shuffle_block: int = 1,
    pbo_blocks: int = 16,
    leak_max_abs_corr: float = 0.3,
    ablation_batch: int = 512,
    seed: int = 0,
    split_version: str | None = None,
    weights: WeightsCatalog | None = None,
    strategy: StrategySubject | None = None,
) -> ValidationReport:
    """Judge the run's best-by-validation checkpoint on ``splits`` (see the module doc).

    ``split_version`` names the splits as the checkpoints recorded them (the lake's version of the
    ``.npz``); by default the splits' own content hash, as :func:`train_experiment` records it.
    ``weights``: the catalog's record of the run's checkpoints; every checkpoint the report would load
    is checked against it first (a changed or unregistered one raises ``CheckpointIntegrityError``).
    ``strategy``: judge these positions instead of a checkpoint (``run_dir_or_checkpoints`` is then
    ignored): the same sections, with the model-only ones (3, 4a) marked not applicable.
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    # settings every report passes through to _build_report unchanged
    shared = dict(
        bars_per_year=bars_per_year,
        shuffle_block=shuffle_block,
        truncation_results=truncation_results,
        gates=gates or Gates(),
        n_perm=n_perm,
        perm_block=perm_block,
        pbo_blocks=pbo_blocks,
        leak_max_abs_corr=leak_max_abs_corr,
        ablation_batch=ablation_batch,
        seed=seed,
        timings=timings,
        lap=lap,
    )
    if strategy is not None:
        return _build_report(
            None,
            Path(strategy.source or strategy.name),
            [],
            strategy.n_trials,
            splits,
            experiment,
            costs=costs or costs_from_experiment(experiment),
            fkey="features_denoised",
            exp_name=f"strategy:{strategy.name}",
            dataset=strategy.dataset,
            warnings=[],
            replays=dict(strategy.replays),
            n_shuffles=0,
            **shared,
        )
    selected_path, evaluated, n_trials = resolve_checkpoints(run_dir_or_checkpoints)
    if weights is not None:  # before anything is evaluated
        for path in evaluated:
            weights.verify(path)
    sel = _load(selected_path)
    env_cfg = sel.env_cfg
    costs = costs or costs_from_experiment(experiment, env_cfg)
    fkey = experiment.features_key if experiment is not None else sel.features_key
    exp_name = experiment.name if experiment is not None else sel.meta.get("experiment", "unknown")
    dataset = experiment.dataset if experiment is not None else "unknown"
    warnings: list[str] = []
    split_version = split_version or splits.content_hash()[:16]
    if sel.meta.get("split_version") not in (None, split_version):
        warnings.append(
            f"the checkpoint was trained on split version {sel.meta.get('split_version')}, "
            f"this report evaluates split version {split_version}"
        )
    lap("load")

    # ---- replays of the selected checkpoint: train, val, test, live, shuffled test copies
    rng = np.random.default_rng(seed)
    names = [n for n in ("train", "val", "test", "live") if n in splits.splits]
    for need in ("val", "test", "live"):
        if need not in names:
            raise ValueError(f"splits have no {need!r} split")
    series = {n: (splits[n][fkey], splits[n].regime_ids, splits[n].returns) for n in names}
    test = splits["test"]
    shuffled = []
    for _ in range(n_shuffles):
        n = test.n_samples
        starts = np.arange(0, n, shuffle_block)
        order = np.concatenate([np.arange(s, min(s + shuffle_block, n)) for s in rng.permutation(starts)])
        shuffled.append(
            (
                np.asarray(test[fkey])[order],
                np.asarray(test.regime_ids)[order],
                np.nan_to_num(np.asarray(test.returns, dtype=np.float64)[order]),
            )
        )
    keys = [*names, *[f"shuffle_{i + 1}" for i in range(n_shuffles)]]
    all_series = [*series.values(), *shuffled]
    replays = dict(zip(keys, replay_greedy([sel.policy] * len(all_series), all_series, env_cfg), strict=True))
    lap("replay_selected")
    return _build_report(
        sel,
        selected_path,
        evaluated,
        n_trials,
        splits,
        experiment,
        costs=costs,
        fkey=fkey,
        exp_name=exp_name,
        dataset=dataset,
        warnings=warnings,
        replays=replays,
        n_shuffles=n_shuffles,
        env_cfg=env_cfg,
        **shared,
    )


def _build_report(
    sel: _Loaded | None,
    selected_path: Path,
    evaluated: list[Path],
    n_trials: int,
    splits: DatasetSplits,
    experiment: Experiment | None,
    *,
    bars_per_year: float,
    costs: CostModel,
    fkey: str,
    exp_name: str,
    dataset: str,
    warnings: list[str],
    replays: dict[str, Replay],
    n_shuffles: int,
    shuffle_block: int,
    truncation_results: Mapping[str, bool] | None,
    gates: Gates,
    n_perm: int,
    perm_block: int,
    pbo_blocks: int,
    leak_max_abs_corr: float,
    ablation_batch: int,
    seed: int,
    timings: dict[str, float],
    lap,
    env_cfg: EnvConfig | None = None,
) -> ValidationReport:
    """Sections 1-7 from the replays: of the selected checkpoint ``sel``, or of a strategy (``sel`` None)."""
    names = [n for n in ("train", "val", "test", "live") if n in splits.splits and n in replays]
    for need in ("val", "test", "live"):
        if need not in names:
            raise ValueError(f"no {need!r} segment to evaluate")
    test = splits["test"]
    runs = {n: _split_run(n, splits[n], replays[n], costs, bars_per_year, seed) for n in names}
    lap("backtests")
    val, tst, live = runs["val"], runs["test"], runs["live"]
    train = runs.get("train")
    sections: list[Section] = []
    rows: list[tuple] = []
    for n, run in runs.items():
        sec = SECTION_OF_SPLIT[n]
        for subject in SUBJECTS:
            rows += _metric_rows(sec, subject, "ALL", run.stats[subject])
            for regime, r in run.by_regime[subject].iterrows():
                rows += _metric_rows(sec, subject, str(regime), r.to_dict())

    # ---- (1) validation vs test
    cols = [
        "sharpe",
        "cumulative_return",
        "max_drawdown",
        "annual_volatility",
        "n_trades",
        "turnover_per_bar",
        "long_share",
        "short_share",
        "flat_share",
        "ruined",
    ]
    vt = pd.DataFrame({SECTION_OF_SPLIT[n]: {c: runs[n].stats["policy"][c] for c in cols} for n in names})
    s1 = Section("1. Validation vs test (selected checkpoint, greedy, net of costs)")
    recorded = sel.meta.get("metrics", {}).get("greedy_sharpe") if sel is not None else None
    what = (
        f"Checkpoint `{selected_path.name}` (step {sel.step}) was selected by the run's best pointer "
        "on VALIDATION; it is never re-selected on test."
        if sel is not None
        else f"Positions of strategy `{exp_name}` from `{selected_path.name}` ({n_trials} variant(s) tried)."
    )
    s1.add(
        f"{what} Costs: transaction "
        f"{costs.transaction_cost:g} per unit of position change, carry {costs.carry_cost:g} per bar, "
        f"borrow {costs.borrow_rate_annual:g} per year; Sharpe annualized with {bars_per_year:g} bars "
        "per year. Training-time validation Sharpe recorded in the checkpoint: "
        f"{recorded if recorded is None else f'{float(recorded):.3f}'}.",
        vt,
    )
    for n in ("val", "test"):
        run = runs[n]
        s1.add(f"**{SECTION_OF_SPLIT[n]}: policy per regime** (regime known at each decision)")
        s1.add(run.by_regime["policy"][list(REGIME_TABLE_COLUMNS)])
        s1.add(f"**{SECTION_OF_SPLIT[n]}: action distribution per regime** (log 001)")
        s1.add(_shares_by_regime(run.replay.action, run.regimes[: len(run.replay.action)]))
        base = pd.DataFrame({s: run.stats[s] for s in SUBJECTS}).T[
            ["sharpe", "cumulative_return", "max_drawdown", "n_trades", "turnover_per_bar", "final_value"]
        ]
        s1.add(f"**{SECTION_OF_SPLIT[n]}: policy vs baselines, net of the same costs**", base)
    s1.add(
        Plot(
            "validation and test equity: policy vs buy-and-hold",
            report_plots.equity_plot(
                np.r_[val.timestamps, tst.timestamps],
                {
                    "policy": np.r_[val.policy.equity, val.policy.equity[-1] * tst.policy.equity],
                    "buy_and_hold": np.r_[
                        val.results["buy_and_hold"].equity,
                        val.results["buy_and_hold"].equity[-1] * tst.results["buy_and_hold"].equity,
                    ],
                },
                "validation then test (equity, log scale)",
            ),
            "validation_test_equity",
        )
    )
    sections.append(s1)
    lap("section1")

    # ---- (2) leakage
    lk_names = [f"raw_{f}" for f in splits.feature_names] + [f"den_{f}" for f in splits.feature_names]
    x = np.concatenate(
        [
            np.hstack([splits[n].features_raw, splits[n].features_denoised])
            for n in ("train", "val", "test")
            if n in splits.splits
        ]
    )
    y = np.concatenate(
        [next_returns(splits[n].returns) for n in ("train", "val", "test") if n in splits.splits]
    )
    corr = feature_return_correlations(x, lk_names, y, suspicious_abs_corr=leak_max_abs_corr)
    worst = np.maximum(corr["pearson"].abs(), corr["spearman"].abs())
    corr = corr.assign(abs_max=worst).sort_values("abs_max", ascending=False)
    suspicious = {k: float(corr.loc[k, "pearson"]) for k in corr.index[corr["suspicious"]]}
    trunc = {str(k): bool(v) for k, v in (truncation_results or {}).items()}
    s2 = Section("2. Leakage: features at t vs r[t+1] (train+val+test, never live)")
    thr, n_obs = float(corr["threshold"].iloc[0]), int(corr["n"].iloc[0])
    s2.add(
        "Pearson and Spearman correlation of every raw and denoised feature at t with r[t+1] over "
        f"{n_obs} rows. Chance threshold (Bonferroni over {2 * len(lk_names)} tests, alpha 0.05): "
        f"|corr| > {thr:.4f} (about 1/sqrt(n)). Leak bar: |corr| > {leak_max_abs_corr} (log 000 let "
        f"-0.62 pass with a bar at 0.95). Flagged beyond chance: {int(corr['flagged'].sum())}; "
        f"suspicious (leak gate): {len(suspicious)}.",
        corr.head(10)[["pearson", "spearman", "threshold", "flagged", "suspicious"]],
    )
    if corr["flagged"].any():
        s2.add("**Flagged rows**", corr[corr["flagged"]][["pearson", "spearman", "flagged", "suspicious"]])
    if trunc:
        s2.add("**Upstream truncation invariance**", pd.DataFrame({"passed": trunc}).rename_axis("table"))
    else:
        s2.add("No truncation-invariance results were passed in: the verdict fails closed on them.")
    s2.add(
        Plot(
            "largest |corr| with r[t+1]",
            report_plots.correlation_bars(
                corr["pearson"], thr, leak_max_abs_corr, "feature at t vs r[t+1] (Pearson)"
            ),
            "leakage_correlations",
        )
    )
    sections.append(s2)
    rows += [
        ("leakage", "policy", "ALL", "max_abs_corr", float(worst.max())),
        ("leakage", "policy", "ALL", "n_flagged", float(corr["flagged"].sum())),
        ("leakage", "policy", "ALL", "n_suspicious", float(len(suspicious))),
        ("leakage", "policy", "ALL", "threshold", thr),
    ]
    lap("section2")

    # ---- (3) constant inputs
    abl = pd.DataFrame(columns=list(ACTIONS), dtype=float)
    if sel is None:
        sections.append(
            Section("3. Zero input / random noise / all-ones windows").add(
                "Not applicable: a positions file has no model to feed constant inputs."
            )
        )
    else:
        pol, ctx = sel.policy, sel.policy.cfg.context
        n_feat = np.asarray(splits["val"][fkey]).shape[1]

        @torch.no_grad()
        def act(xb: np.ndarray) -> np.ndarray:
            b = xb.shape[0]
            reg = torch.arange(b)[:, None].expand(b, ctx) % len(REGIMES)
            logits, _ = pol.forward_windows(torch.from_numpy(xb), reg, torch.zeros(b, 3))
            return logits.argmax(-1).numpy()

        abl = input_ablation(act, (ctx, n_feat), seed=seed, batch=ablation_batch, action_names=ACTIONS)
        long_var = float(abl["long"].max() - abl["long"].min())
        s3 = Section("3. Zero input / random noise / all-ones windows")
        s3.add(
            f"The greedy action mix on {ablation_batch} constant windows of {ctx} bars x {n_feat} features "
            "(regimes spread evenly, flat position state). Log 000 read 72% SHORT on all-zeros (the value of "
            "every standardized feature at its mean) as fine; it is the policy's bias. "
            f"LONG share variation across inputs: {long_var:.1%}.",
            abl,
        )
        sections.append(s3)
        for kind, r in abl.iterrows():
            rows += _metric_rows("ablation", "policy", "ALL", {f"{kind}_share_{a}": r[a] for a in ACTIONS})
        if abl.max(axis=1).min() > 0.95 and long_var < 0.02:
            warnings.append("the policy picks the same action whatever its input (constant bias)")
    lap("section3")

    # ---- (4) shuffle + permutation
    sh_sharpes = np.array(
        [sharpe_ratio(replays[f"shuffle_{i + 1}"].net_return, bars_per_year) for i in range(n_shuffles)]
    )
    perm = permutation_pvalue(
        tst.policy.positions,
        np.r_[0.0, np.asarray(test.returns, dtype=np.float64)[tst.t0 + 1 :]],
        costs,
        bars_per_year,
        n_perm=n_perm,
        block=perm_block,
        seed=seed,
    )
    s4 = Section("4. Shuffle test and block permutation p-value")
    sh_tab = pd.DataFrame({"sharpe": sh_sharpes}, index=[f"shuffle {i + 1}" for i in range(n_shuffles)])
    if n_shuffles:
        sh_tab.loc["mean"] = float(sh_sharpes.mean())
    if sel is None:
        s4.add("(a) Not applicable: a positions file cannot be re-run on shuffled bars (no model).")
    else:
        s4.add(
            "(a) The policy re-run on the test bars shuffled in time (rows of features, regimes and "
            f"returns permuted together, blocks of {shuffle_block}; returns, not price levels). A decision "
            "at t then earns the return of an unrelated bar: an honest pipeline scores about zero less "
            "costs; a clearly positive mean means the evaluation pays the policy a return its inputs "
            "already contain (log 000's Sharpe 10).",
            sh_tab,
        )
    s4.add(
        f"(b) Block permutation test of the real test Sharpe (positions kept, returns permuted in blocks of "
        f"{perm_block} with a random rotation, {n_perm} permutations): observed Sharpe {perm.sharpe:.3f}, "
        f"p-value {perm.p_value:.4f}, null mean {float(np.mean(perm.null_sharpes)):.3f}, null 95% quantile "
        f"{float(np.quantile(perm.null_sharpes, 0.95)):.3f}.",
        Plot(
            "permutation null of the test Sharpe",
            report_plots.null_histogram(
                perm.null_sharpes, perm.sharpe, "test Sharpe vs block-permutation null"
            ),
            "permutation_null",
        ),
    )
    sections.append(s4)
    if n_shuffles >= 2:
        se = float(sh_sharpes.std(ddof=1) / math.sqrt(n_shuffles))
        if sh_sharpes.mean() > 0 and sh_sharpes.mean() > 2 * se:
            warnings.append(
                f"shuffled-test Sharpe mean {sh_sharpes.mean():.2f} > 0 by more than 2 standard errors: the "
                "evaluation may pay returns the inputs already see"
            )
    rows += _metric_rows(
        "shuffle", "policy", "ALL", {f"sharpe_shuffle_{i + 1}": s for i, s in enumerate(sh_sharpes)}
    )
    rows += _metric_rows(
        "significance", "policy", "ALL", {"perm_pvalue": perm.p_value, "perm_sharpe": perm.sharpe}
    )
    lap("section4")

    # ---- (5) live year
    train_shares = _shares(train.replay.action) if train is not None else None
    live_shares = _shares(live.replay.action)
    s5 = Section("5. Live-year backtest (held out from training and selection)")
    live_tab = pd.DataFrame({s: live.stats[s] for s in SUBJECTS}).T[
        ["final_value", "cumulative_return", "sharpe", "max_drawdown", "n_trades", "ruined"]
    ]
    first, last_ts = pd.Timestamp(live.timestamps[0], tz="UTC"), pd.Timestamp(live.timestamps[-1], tz="UTC")
    s5.add(
        f"{first:%Y-%m-%d} to {last_ts:%Y-%m-%d}, {len(live.timestamps)} bars, starting capital 1.",
        Plot(
            "live equity: policy vs buy-and-hold",
            report_plots.equity_plot(
                live.timestamps,
                {s: live.results[s].equity for s in ("policy", "buy_and_hold", "ma_crossover")},
                "live year: equity (log scale)",
            ),
            "live_year_equity_vs_buy_and_hold",
        ),
        live_tab,
    )
    drift_rows = {"live": live_shares}
    if train_shares is not None:
        drift_rows = {"train": train_shares, **drift_rows}
    for n in ("val", "test"):
        drift_rows[SECTION_OF_SPLIT[n]] = _shares(runs[n].replay.action)
    drift = pd.DataFrame.from_dict(drift_rows, orient="index")[list(ACTIONS)]
    tvd = total_variation(train_shares, live_shares) if train_shares is not None else float("nan")
    s5.add(
        f"**Action distribution, training vs live** (total variation train -> live: {tvd:.3f}; gate "
        f"{gates.max_action_drift_tvd}). Log 000: 54/34/12 long/short/flat in training, 22/64/14 live.",
        drift,
        Plot(
            "action mix per segment",
            report_plots.action_share_bars(drift, "greedy action shares"),
            "action_mix",
        ),
        "**Live: policy per regime**",
        live.by_regime["policy"][list(REGIME_TABLE_COLUMNS)],
        "**Live: action distribution per regime**",
        _shares_by_regime(live.replay.action, live.regimes[: len(live.replay.action)]),
        Plot(
            "action mix per regime (validation, test, live)",
            report_plots.action_mix_per_regime(
                {
                    SECTION_OF_SPLIT[n]: _shares_by_regime(
                        runs[n].replay.action, runs[n].regimes[: len(runs[n].replay.action)]
                    )
                    for n in ("val", "test", "live")
                },
                "greedy action shares per regime",
            ),
            "action_mix_per_regime",
        ),
    )
    if train is not None:
        s5.add(
            "**Train: action distribution per regime**",
            _shares_by_regime(train.replay.action, train.regimes[: len(train.replay.action)]),
        )
    sections.append(s5)
    rows += [("live", "policy", "ALL", "action_drift_tvd", tvd)]
    lap("section5")

    # ---- (6) multiple testing
    others = [p for p in evaluated if p != selected_path] if sel is not None else []
    loaded = [_load(p) for p in others]
    val_series = (splits["val"][fkey], splits["val"].regime_ids, splits["val"].returns)
    other_replays = (
        replay_greedy([x.policy for x in loaded], [val_series] * len(loaded), env_cfg) if loaded else []
    )
    m_len = len(val.replay.net_return)
    cols_net = {selected_path.name: val.replay.net_return}
    for p, rp in zip(others, other_replays, strict=True):
        cols_net[p.name] = np.pad(rp.net_return, (0, m_len - len(rp.net_return)))
    step_of = {
        selected_path.name: sel.step if sel else 0,
        **{p.name: x.step for p, x in zip(others, loaded, strict=True)},
    }
    matrix = np.column_stack(list(cols_net.values()))
    trial_sr = per_bar_sharpes(matrix)
    sel_ret = val.replay.net_return

    def safe(fn, *a, **k) -> float:
        try:
            return float(fn(*a, **k))
        except ValueError:
            return float("nan")

    psr = safe(probabilistic_sharpe_ratio, sel_ret)
    psr_test = safe(probabilistic_sharpe_ratio, tst.replay.net_return)
    dsr = safe(deflated_sharpe_ratio, sel_ret, trial_sr, n_trials)
    if sel is None and n_trials > 1:  # one series of N tried: their Sharpes' spread is the null's, 1/(T-1)
        null_var = 1.0 / max(len(sel_ret) - 1, 1)
        dsr = safe(probabilistic_sharpe_ratio, sel_ret, expected_max_sharpe(null_var, n_trials))
    pbo, pbo_note = float("nan"), ""
    if matrix.shape[1] >= 2 and matrix.shape[0] >= 2 * pbo_blocks:
        pbo = probability_of_backtest_overfitting(matrix, pbo_blocks).pbo
    else:
        pbo_note = f" PBO needs at least 2 checkpoints and {2 * pbo_blocks} bars; it is not defined here."
    trials = pd.DataFrame(
        {
            "step": [step_of[k] for k in cols_net],
            "val_sharpe_per_bar": trial_sr,
            "val_sharpe": trial_sr * math.sqrt(bars_per_year),
            "selected": [k == selected_path.name for k in cols_net],
        },
        index=pd.Index(list(cols_net), name="checkpoint"),
    ).sort_values("step")
    s6 = Section("6. Multiple testing: PSR, Deflated Sharpe, PBO")
    s6.add(
        f"The selection is the best of {n_trials} validated checkpoint(s) ({len(cols_net)} replayed here). "
        f"PSR (validation, vs 0): {psr:.4f}; PSR on test: {psr_test:.4f}. DSR of the selected checkpoint "
        f"against the expected maximum Sharpe of {n_trials} unskilled trials (variance from the per-bar "
        f"validation Sharpes below): {dsr:.4f} (gate >= {gates.min_dsr}). PBO by CSCV over the checkpoints' "
        f"per-bar validation returns ({pbo_blocks} blocks): {pbo:.3f}.{pbo_note}",
        trials,
    )
    if sel is None:
        s6.add(
            f"A strategy: {n_trials} variant(s) tried (`--trials`), one replayed. The spread of the "
            "variants' Sharpes is unknown, so the DSR takes the null's sampling variance 1/(T-1) per bar."
        )
    sections.append(s6)
    rows += _metric_rows(
        "significance",
        "policy",
        "ALL",
        {"psr": psr, "psr_test": psr_test, "dsr": dsr, "pbo": pbo, "n_trials": n_trials},
    )
    lap("section6")

    # ---- return attribution (every segment): market exposure vs timing
    attribution = {
        SECTION_OF_SPLIT[n]: attribute_returns(
            runs[n].policy.exposure,
            np.asarray(splits[n].returns, dtype=np.float64)[runs[n].t0 + 1 :],
            runs[n].policy.costs,
        )
        for n in names
    }
    attr_tab = pd.DataFrame({k: a.as_dict() for k, a in attribution.items()}).T
    s6b = Section("6b. Return attribution: market exposure vs timing")
    s6b.add(
        "Gross P&L (sum of per-bar returns, before costs) = market exposure (bars x mean position x mean "
        "market return: the drift any constant position of that size earns) + timing (bars x covariance "
        "of the position with the next return: what moving the position earned). Shares are of "
        "|exposure| + |timing|. p-values are one-sided, Newey-West (HAC) errors: timing from the OLS slope "
        "of r[t+1] on the position, exposure from the mean market return in the direction of the mean "
        "position. Timing gate: "
        f"{'off' if gates.max_timing_p is None else f'test timing p <= {gates.max_timing_p}'}.",
        attr_tab[
            [
                "gross_pnl",
                "exposure_pnl",
                "timing_pnl",
                "costs",
                "mean_exposure",
                "exposure_share",
                "timing_share",
                "exposure_p",
                "timing_p",
                "timing_t",
            ]
        ],
    )
    sections.append(s6b)
    for seg, a in attribution.items():
        rows += _metric_rows(seg, "policy", "ALL", {f"attribution_{k}": v for k, v in a.as_dict().items()})

    # ---- evidence and verdict
    evidence = {
        "timing_p": attribution["test"].timing_p,
        "attribution": {k: a.as_dict() for k, a in attribution.items()},
        "truncation_invariant": (all(trunc.values()) if trunc else None),
        "truncation_results": trunc,
        "validation_action_shares": _shares(val.replay.action),
        "test_action_shares": _shares(tst.replay.action),
        "live_action_shares": live_shares,
        "dsr": dsr,
        "psr": psr,
        "pbo": pbo,
        "permutation_p": perm.p_value,
        "live_ruined": bool(live.policy.ruined),
        "live_max_drawdown": live.stats["policy"]["max_drawdown"],
        "live_final_value": live.stats["policy"]["final_value"],
        "live_sharpe": live.stats["policy"]["sharpe"],
        "live_buy_and_hold_sharpe": live.stats["buy_and_hold"]["sharpe"],
        "validation_sharpe": val.stats["policy"]["sharpe"],
        "test_sharpe": tst.stats["policy"]["sharpe"],
        "shuffle_sharpes": [float(s) for s in sh_sharpes],
        "ablation": {k: {a: float(v) for a, v in r.items()} for k, r in abl.iterrows()},
        "leak_max_abs_corr": float(worst.max()),
        "leak_suspicious_features": suspicious,
        "leak_flags": len(suspicious) + sum(not ok for ok in trunc.values()),
        "n_checkpoints": n_trials,
        "selected_step": sel.step if sel else 0,
    }
    if train_shares is not None:
        evidence["train_action_shares"] = train_shares
    verdict = apply_leakage_gate(judge(evidence, gates), evidence, leak_max_abs_corr)
    verdict.warnings.extend(warnings)
    s7 = Section("7. Verdict")
    s7.add(f"**{'PASS' if verdict.passed else 'FAIL'}**")
    if verdict.reasons:
        s7.add("Reasons:", "\n".join(f"- {r}" for r in verdict.reasons))
    if verdict.warnings:
        s7.add("Warnings:", "\n".join(f"- {w}" for w in verdict.warnings))
    s7.add(pd.DataFrame({"passed": verdict.checks}).rename_axis("gate"))
    sections.append(s7)
    metrics = pd.DataFrame(rows, columns=["section", "subject", "regime", "metric", "value"])
    lap("verdict")
    return ValidationReport(
        experiment=exp_name,
        dataset=dataset,
        checkpoint_step=sel.step if sel else 0,
        checkpoint_path=str(selected_path),
        evidence=evidence,
        verdict=verdict,
        sections=sections,
        metrics=metrics,
        n_checkpoints=n_trials,
        bars_per_year=bars_per_year,
        timings=timings,
    )
