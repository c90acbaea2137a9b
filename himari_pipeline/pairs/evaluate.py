"""Judge a pair strategy: log 004's table per segment against baselines, attribution and the gate.

The subject is a trained policy's positions (:class:`Subject`, its checkpoints the Deflated Sharpe's
trials) or, by default, the z-score mean-reversion rule with its entry/exit chosen on validation
from a grid (every grid point a trial). The splits are the pipeline's
(:func:`~himari_pipeline.datasets.layout.plan_splits`: train/val/test and a live segment, embargoes
between them) on the aligned bars after the spread's warm-up. Each segment is backtested on its own
from flat with the trading rules on every leg (:class:`~himari_pipeline.evaluation.backtest.Legs`:
transaction cost per leg's traded notional, borrow on the short leg's notional per bar of the
calendar, leverage = gross exposure of a full position). The verdict is
:func:`~himari_pipeline.evaluation.verdict.judge` on the same evidence keys as a trained policy:
truncation invariance of the spread features, action shares per segment, DSR of the selection,
block permutation p on test, the live segment against buying both legs, leakage correlations of the
features with the next spread return.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from himari_pipeline.datasets.layout import SplitConfig, SplitPlan, plan_splits
from himari_pipeline.evaluation.attribution import attribute_returns
from himari_pipeline.evaluation.backtest import BacktestResult, Legs, backtest
from himari_pipeline.evaluation.metrics import compute_stats
from himari_pipeline.evaluation.significance import (
    deflated_sharpe_ratio,
    per_bar_sharpes,
    permutation_pvalue,
)
from himari_pipeline.evaluation.verdict import Gates, Verdict, judge
from himari_pipeline.pairs.legs import AlignedLegs
from himari_pipeline.pairs.signals import buy_and_hold_legs, zscore_positions
from himari_pipeline.pairs.spread import SpreadConfig, spread_frame, spread_legs
from himari_pipeline.trading.rules import TradingRules
from himari_pipeline.vocabulary import action_shares, position_actions

SEGMENTS = ("train", "val", "test", "live")
#: log 004's columns (and the daily / annualized returns it asked for), from :func:`compute_stats`.
TABLE_COLUMNS = (
    "final_value",
    "cumulative_return",
    "sharpe",
    "turnover_per_bar",
    "max_drawdown",
    "avg_bar_return",
    "avg_daily_return",
    "annual_return",
)
#: Daily returns are shown for bars of a day or shorter (monthly bars: NaN; see ``avg_bar_return``).
MIN_DAILY_BARS = 200.0
SUBJECT = "zscore_selected"
#: Bars before every policy feature exists (:mod:`.features`: 20-bar returns and volatility).
WARMUP_FEATURES = 21
BASELINES = ("zscore_2.0_0.5", "buy_and_hold_legs", "flat")


@dataclass(frozen=True)
class PairConfig:
    """The spread model, the rule's grid, the costs (log 004: 1.5x gross, 6.75 % borrow) and splits."""

    spread: SpreadConfig = field(default_factory=SpreadConfig)
    entries: tuple[float, ...] = (1.0, 1.5, 2.0)
    exits: tuple[float, ...] = (0.0, 0.5)
    transaction_cost: float = 0.0005  # per unit of each leg's traded notional (5 bps)
    borrow_rate_annual: float = 0.0675  # on the short leg's notional
    leverage: float = 1.5  # gross exposure of a full spread position
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    live: str = "auto"
    n_perm: int = 1000
    block: int | None = None  # permutation block in bars; None: about a month of bars

    def __post_init__(self) -> None:
        self.rules(1.0)  # the costs and the leverage are the trading rules': they validate them

    def rules(self, bars_per_year: float, leverage: float | None = None) -> TradingRules:
        lev = self.leverage if leverage is None else leverage
        return TradingRules(
            transaction_cost=self.transaction_cost,
            borrow_rate_annual=self.borrow_rate_annual,
            bars_per_year=bars_per_year,
            leverage=lev,
        )


@dataclass
class Subject:
    """Positions to judge (one per bar, in units of the leverage), decided at each close, and the
    per-bar validation Sharpes of every variant the selection looked at (the DSR's trials)."""

    name: str
    positions: np.ndarray
    trial_sharpes: np.ndarray  # finite ones only
    note: str = ""
    n_trials: int | None = None  # variants looked at (default: len(trial_sharpes))


@dataclass
class PairEvaluation:
    """Everything the pair report shows."""

    legs: tuple[str, ...]
    bars_per_year: float
    ranges: dict[str, tuple[int, int]]
    bounds: dict[str, tuple[str, str]]
    subject: str  # the judged strategy's name in the table
    selected: str  # what was selected and how
    trials: pd.DataFrame  # the selection's trials and their validation Sharpes
    table: pd.DataFrame  # index (segment, strategy), TABLE_COLUMNS
    attribution: dict[str, dict[str, float]]  # segment -> Attribution.as_dict() of the subject
    evidence: dict
    verdict: Verdict
    dropped_bars: int
    config: PairConfig


def _segment(arr: np.ndarray, r: tuple[int, int]) -> np.ndarray:
    return arr[r[0] : r[1]]


def truncation_invariant(
    closes: pd.DataFrame, cfg: SpreadConfig, full: pd.DataFrame | None = None, cuts: int = 4
) -> bool:
    """The spread features of the first ``k`` bars equal the full series' first ``k`` rows, bit for
    bit, at ``cuts`` cut points (``full``: the whole series' features, when already computed)."""
    full = spread_frame(closes, cfg) if full is None else full
    n = len(closes)
    for k in np.linspace(max(cfg.warmup + 2, 3), n, cuts + 1, dtype=int)[:-1]:
        part = spread_frame(closes.iloc[:k], cfg)
        if not part.equals(full.iloc[:k]):
            return False
    return True


def _leak_correlations(features: pd.DataFrame, next_return: np.ndarray) -> dict:
    out = {}
    for name in ("zscore", "beta"):
        x = features[name].to_numpy()[:-1]
        y = next_return[1:]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 3:
            continue
        xs, ys = pd.Series(x[ok]), pd.Series(y[ok])
        out[name] = {"pearson": float(xs.corr(ys)), "spearman": float(xs.corr(ys, method="spearman"))}
    return out


def pair_plan(aligned: AlignedLegs, cfg: PairConfig, context: int = 1) -> SplitPlan:
    """The pipeline's splits of the aligned bars after the features' warm-up (embargo: context + 1)."""
    warmup = max(cfg.spread.warmup, WARMUP_FEATURES)
    return plan_splits(
        aligned.timestamps, warmup, SplitConfig(fractions=cfg.fractions, context=context, live=cfg.live)
    )


def evaluate_pair(
    aligned: AlignedLegs,
    cfg: PairConfig = PairConfig(),
    gates: Gates | None = None,
    subject: Subject | None = None,
    plan: SplitPlan | None = None,
) -> PairEvaluation:
    """Backtest the subject (default: the z-score rule selected on validation) and the baselines on
    every segment, attribute, test and judge."""
    if len(aligned.names) != 2:
        raise ValueError(f"pairs take 2 legs, got {aligned.names}")
    k = aligned.bars_per_year
    features = spread_frame(aligned.closes, cfg.spread)
    legs = spread_legs(aligned.returns, features["beta"].to_numpy(), aligned.names)
    bh_legs = buy_and_hold_legs(aligned.returns, aligned.names)
    r_spread = legs.spread_returns
    plan = plan or pair_plan(aligned, cfg)
    ranges = {s: plan.ranges[s] for s in SEGMENTS}
    rules, bh_rules = cfg.rules(k), cfg.rules(k, leverage=1.0)
    z = features["zscore"].to_numpy()
    gaps = aligned.gap_before
    ts = aligned.timestamps

    def run(positions: np.ndarray, seg: str, the_legs: Legs = legs, the_rules: TradingRules = rules):
        r = ranges[seg]
        sub = the_legs.rows(*r)
        return backtest(
            _segment(positions, r), sub.spread_returns, the_rules, k, gap_before=_segment(gaps, r), legs=sub
        )

    if subject is None:
        subject = select_rule(z, cfg, lambda p: run(p, "val"), k)
    positions = np.asarray(subject.positions, dtype=np.float64)
    if positions.shape != z.shape:
        raise ValueError(f"{len(positions)} positions for {len(z)} bars")
    strategies = {
        subject.name: (positions, legs, rules),
        BASELINES[0]: (zscore_positions(z, 2.0, 0.5), legs, rules),
        BASELINES[1]: (np.ones(len(z)), bh_legs, bh_rules),
        BASELINES[2]: (np.zeros(len(z)), legs, rules),
    }
    rows, results = {}, {}
    for seg in SEGMENTS:
        r = ranges[seg]
        for name, (pos, the_legs, the_rules) in strategies.items():
            res = run(pos, seg, the_legs, the_rules)
            results[seg, name] = res
            stats = compute_stats(res, k, timestamps=_segment(ts, r) if k >= MIN_DAILY_BARS else None)
            stats["avg_bar_return"] = float(res.net_returns.mean()) if res.n_steps else np.nan
            rows[seg, name] = {c: stats.get(c, np.nan) for c in TABLE_COLUMNS}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["segment", "strategy"])

    attribution = {}
    for seg in SEGMENTS:
        res: BacktestResult = results[seg, subject.name]
        seg_r = _segment(r_spread, ranges[seg])
        try:
            attribution[seg] = attribute_returns(res.exposure, seg_r[1:], res.costs).as_dict()
        except ValueError:
            attribution[seg] = {}

    test_r = ranges["test"]
    test_legs = legs.rows(*test_r)
    block = cfg.block or max(2, round(k / 12))
    perm = permutation_pvalue(
        _segment(positions, test_r), test_legs.spread_returns, rules, k, cfg.n_perm, block, legs=test_legs
    )
    trial_sr = np.asarray(subject.trial_sharpes, dtype=np.float64)
    n_trials = subject.n_trials or len(trial_sr)
    val_net = results["val", subject.name].raw_net_returns
    if len(trial_sr) >= 2:
        dsr = deflated_sharpe_ratio(val_net, trial_sr, n_trials)
    else:  # the trials' spread is unknown: the null's sampling variance stands in
        dsr = deflated_sharpe_ratio(val_net, None, n_trials)
    live = results["live", subject.name]
    evidence = {
        "truncation_invariant": truncation_invariant(aligned.closes, cfg.spread, features),
        **{
            f"{'validation' if s == 'val' else s}_action_shares": action_shares(
                position_actions(_segment(positions, ranges[s])[:-1])
            )
            for s in SEGMENTS
        },
        "dsr": float(dsr),
        "permutation_p": perm.p_value,
        "live_ruined": bool(live.ruined),
        "live_max_drawdown": float(table.loc[("live", subject.name), "max_drawdown"]),
        "live_sharpe": float(table.loc[("live", subject.name), "sharpe"]),
        "live_buy_and_hold_sharpe": float(table.loc[("live", BASELINES[1]), "sharpe"]),
        "leak_correlations": _leak_correlations(features, r_spread),
        "validation_sharpe": float(table.loc[("val", subject.name), "sharpe"]),
        "test_sharpe": float(table.loc[("test", subject.name), "sharpe"]),
        "timing_p": attribution["test"].get("timing_p", np.nan),
    }
    trials = pd.DataFrame({"trial": np.arange(len(trial_sr)), "val_sharpe": trial_sr * np.sqrt(k)}).set_index(
        "trial"
    )
    return PairEvaluation(
        legs=aligned.names,
        bars_per_year=k,
        ranges=ranges,
        bounds={s: plan.bounds[s] for s in SEGMENTS if s in plan.bounds},
        subject=subject.name,
        selected=subject.note,
        trials=trials,
        table=table,
        attribution=attribution,
        evidence=evidence,
        verdict=judge(evidence, gates),
        dropped_bars=len(aligned.dropped),
        config=cfg,
    )


def select_rule(z: np.ndarray, cfg: PairConfig, run_val, bars_per_year: float) -> Subject:
    """The z-score rule whose (entry, exit) from the grid has the best validation Sharpe (ties: the
    lower entry); every grid point is a trial."""
    grid = [(e, x) for e, x in itertools.product(cfg.entries, cfg.exits) if e > x]
    candidates = {g: zscore_positions(z, *g) for g in grid}
    val_runs = {g: run_val(p) for g, p in candidates.items()}
    val_sharpes = {g: compute_stats(res, bars_per_year)["sharpe"] for g, res in val_runs.items()}
    best = max(grid, key=lambda g: (np.nan_to_num(val_sharpes[g], nan=-np.inf), -g[0]))
    trial_sr = per_bar_sharpes(np.stack([val_runs[g].raw_net_returns for g in grid], axis=1))
    note = (
        f"z-score rule, entry {best[0]} / exit {best[1]}, the best validation Sharpe of the grid "
        + ", ".join(f"{e}/{x}: {val_sharpes[e, x]:.2f}" for e, x in grid)
    )
    return Subject(SUBJECT, candidates[best], trial_sr, note)
