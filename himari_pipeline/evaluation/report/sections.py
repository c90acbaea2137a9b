"""The report's sections, each built from the findings: prose, tables and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd

from himari_pipeline.evaluation import report_plots
from himari_pipeline.evaluation.baselines import SUBJECTS
from himari_pipeline.evaluation.report.document import Plot, Section
from himari_pipeline.evaluation.report.evidence import Findings
from himari_pipeline.evaluation.report.segments import SECTION_OF_SPLIT
from himari_pipeline.evaluation.verdict import Gates, Verdict
from himari_pipeline.trading.rules import TradingRules
from himari_pipeline.vocabulary import ACTIONS

__all__ = [
    "REGIME_TABLE_COLUMNS",
    "ablation_section",
    "attribution_section",
    "leakage_section",
    "live_section",
    "multiple_testing_section",
    "segments_section",
    "shuffle_section",
    "verdict_section",
]

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
_SEGMENT_COLUMNS = [
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
_BASELINE_COLUMNS = [
    "sharpe",
    "cumulative_return",
    "max_drawdown",
    "n_trades",
    "turnover_per_bar",
    "final_value",
]
_ATTRIBUTION_COLUMNS = [
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


def _chained(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.r_[first, first[-1] * second]


def segments_section(
    f: Findings, subject: str, recorded_sharpe: float | None, costs: TradingRules, bars_per_year: float
) -> Section:
    """1. Validation vs test: the policy, per regime, its action mix and the baselines.

    ``subject``: the sentence saying what is judged; ``recorded_sharpe``: the validation Sharpe the
    checkpoint recorded in training (None for a strategy).
    """
    runs = f.runs
    val, tst = runs["val"], runs["test"]
    vt = pd.DataFrame({r.section: {c: r.stats["policy"][c] for c in _SEGMENT_COLUMNS} for r in runs.values()})
    s = Section("1. Validation vs test (selected checkpoint, greedy, net of costs)")
    s.add(
        f"{subject} Costs: transaction "
        f"{costs.transaction_cost:g} per unit of position change, carry {costs.carry_cost:g} per bar, "
        f"borrow {costs.borrow_rate_annual:g} per year; Sharpe annualized with {bars_per_year:g} bars "
        "per year. Training-time validation Sharpe recorded in the checkpoint: "
        f"{recorded_sharpe if recorded_sharpe is None else f'{float(recorded_sharpe):.3f}'}.",
        vt,
    )
    for run in (val, tst):
        s.add(f"**{run.section}: policy per regime** (regime known at each decision)")
        s.add(run.by_regime["policy"][list(REGIME_TABLE_COLUMNS)])
        s.add(f"**{run.section}: action distribution per regime**")
        s.add(run.shares_by_regime())
        base = pd.DataFrame({x: run.stats[x] for x in SUBJECTS}).T[_BASELINE_COLUMNS]
        s.add(f"**{run.section}: policy vs baselines, net of the same costs**", base)
        s.add(f"**{run.section}: missing bars.** {run.gap_holds.sentence}")
    equity = {
        name: _chained(val.results[name].equity, tst.results[name].equity)
        for name in ("policy", "buy_and_hold")
    }
    s.add(
        Plot(
            "validation and test equity: policy vs buy-and-hold",
            report_plots.equity_plot(
                np.r_[val.timestamps, tst.timestamps], equity, "validation then test (equity, log scale)"
            ),
            "validation_test_equity",
        )
    )
    return s


def leakage_section(f: Findings, max_abs_corr: float) -> Section:
    """2. Leakage: correlations with the next return, the chance threshold and truncation results."""
    lk = f.leakage
    corr = lk.table
    s = Section("2. Leakage: features at t vs r[t+1] (train+val+test, never live)")
    s.add(
        "Pearson and Spearman correlation of every raw and denoised feature at t with r[t+1] over "
        f"{lk.n_obs} rows. Chance threshold (Bonferroni over {2 * len(corr)} tests, alpha 0.05): "
        f"|corr| > {lk.threshold:.4f} (about 1/sqrt(n)). Leak bar: |corr| > {max_abs_corr} (a bar at 0.95 "
        f"lets a leaked feature at -0.62 pass). Flagged beyond chance: {int(corr['flagged'].sum())}; "
        f"suspicious (leak gate): {len(lk.suspicious)}.",
        corr.head(10)[["pearson", "spearman", "threshold", "flagged", "suspicious"]],
    )
    if corr["flagged"].any():
        s.add("**Flagged rows**", corr[corr["flagged"]][["pearson", "spearman", "flagged", "suspicious"]])
    if lk.truncation:
        s.add(
            "**Upstream truncation invariance**", pd.DataFrame({"passed": lk.truncation}).rename_axis("table")
        )
    else:
        s.add("No truncation-invariance results were passed in: the verdict fails closed on them.")
    s.add(
        Plot(
            "largest |corr| with r[t+1]",
            report_plots.correlation_bars(
                corr["pearson"], lk.threshold, max_abs_corr, "feature at t vs r[t+1] (Pearson)"
            ),
            "leakage_correlations",
        )
    )
    return s


def ablation_section(f: Findings, context: int, n_features: int, batch: int) -> Section:
    """3. The greedy action mix on constant windows (not applicable without a model)."""
    s = Section("3. Zero input / random noise / all-ones windows")
    abl = f.ablation
    if abl is None:
        return s.add("Not applicable: a positions file has no model to feed constant inputs.")
    long_var = float(abl["long"].max() - abl["long"].min())
    return s.add(
        f"The greedy action mix on {batch} constant windows of {context} bars x {n_features} features "
        "(regimes spread evenly, flat position state). A policy that picks one action on all-zeros (the "
        "value of every standardized feature at its mean) shows its bias, not a signal. "
        f"LONG share variation across inputs: {long_var:.1%}.",
        abl,
    )


def shuffle_section(
    f: Findings, *, has_model: bool, shuffle_block: int, perm_block: int, n_perm: int
) -> Section:
    """4. (a) the policy on time-shuffled test bars, (b) the block permutation p-value."""
    sh = f.shuffle_sharpes
    perm = f.permutation
    s = Section("4. Shuffle test and block permutation p-value")
    sh_tab = pd.DataFrame({"sharpe": sh}, index=[f"shuffle {i + 1}" for i in range(len(sh))])
    if len(sh):
        sh_tab.loc["mean"] = float(sh.mean())
    if not has_model:
        s.add("(a) Not applicable: a positions file cannot be re-run on shuffled bars (no model).")
    else:
        s.add(
            "(a) The policy re-run on the test bars shuffled in time (rows of features, regimes and "
            f"returns permuted together, blocks of {shuffle_block}; returns, not price levels). A decision "
            "at t then earns the return of an unrelated bar: an honest pipeline scores about zero less "
            "costs; a clearly positive mean means the evaluation pays the policy a return its inputs "
            "already contain.",
            sh_tab,
        )
    return s.add(
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


def live_section(f: Findings, gates: Gates) -> Section:
    """5. The live year: equity against buy-and-hold, metrics, action drift and mix per regime."""
    runs, live, train = f.runs, f.runs["live"], f.runs.get("train")
    s = Section("5. Live-year backtest (held out from training and selection)")
    live_tab = pd.DataFrame({x: live.stats[x] for x in SUBJECTS}).T[
        ["final_value", "cumulative_return", "sharpe", "max_drawdown", "n_trades", "ruined"]
    ]
    first, last = pd.Timestamp(live.timestamps[0], tz="UTC"), pd.Timestamp(live.timestamps[-1], tz="UTC")
    s.add(
        f"{first:%Y-%m-%d} to {last:%Y-%m-%d}, {len(live.timestamps)} bars, starting capital 1.",
        Plot(
            "live equity: policy vs buy-and-hold",
            report_plots.equity_plot(
                live.timestamps,
                {x: live.results[x].equity for x in ("policy", "buy_and_hold", "ma_crossover")},
                "live year: equity (log scale)",
            ),
            "live_year_equity_vs_buy_and_hold",
        ),
        live_tab,
        f"**live: missing bars.** {live.gap_holds.sentence}",
    )
    drift_rows = {"live": live.action_shares}
    if train is not None:
        drift_rows = {"train": train.action_shares, **drift_rows}
    for n in ("val", "test"):
        drift_rows[SECTION_OF_SPLIT[n]] = runs[n].action_shares
    drift = pd.DataFrame.from_dict(drift_rows, orient="index")[list(ACTIONS)]
    s.add(
        "**Action distribution, training vs live** (total variation train -> live: "
        f"{f.action_drift_tvd:.3f}; gate {gates.max_action_drift_tvd}).",
        drift,
        Plot(
            "action mix per segment",
            report_plots.action_share_bars(drift, "greedy action shares"),
            "action_mix",
        ),
        "**Live: policy per regime**",
        live.by_regime["policy"][list(REGIME_TABLE_COLUMNS)],
        "**Live: action distribution per regime**",
        live.shares_by_regime(),
        Plot(
            "action mix per regime (validation, test, live)",
            report_plots.action_mix_per_regime(
                {runs[n].section: runs[n].shares_by_regime() for n in ("val", "test", "live")},
                "greedy action shares per regime",
            ),
            "action_mix_per_regime",
        ),
    )
    if train is not None:
        s.add("**Train: action distribution per regime**", train.shares_by_regime())
    return s


def multiple_testing_section(f: Findings, gates: Gates, pbo_blocks: int, *, strategy: bool) -> Section:
    """6. PSR, Deflated Sharpe and PBO of the selection."""
    mt = f.multiple
    n = mt.n_trials
    s = Section("6. Multiple testing: PSR, Deflated Sharpe, PBO")
    s.add(
        f"The selection is the best of {n} validated checkpoint(s) ({len(mt.trials)} replayed here). "
        f"PSR (validation, vs 0): {mt.psr:.4f}; PSR on test: {mt.psr_test:.4f}. DSR of the selected "
        f"checkpoint against the expected maximum Sharpe of {n} unskilled trials (variance from the per-bar "
        f"validation Sharpes below): {mt.dsr:.4f} (gate >= {gates.min_dsr}). PBO by CSCV over the "
        f"checkpoints' per-bar validation returns ({pbo_blocks} blocks): {mt.pbo:.3f}.{mt.pbo_note}",
        mt.trials,
    )
    if strategy:
        s.add(
            f"A strategy: {n} variant(s) tried (`--trials`), one replayed. The spread of the "
            "variants' Sharpes is unknown, so the DSR takes the null's sampling variance 1/(T-1) per bar."
        )
    return s


def attribution_section(f: Findings, gates: Gates) -> Section:
    """6b. Market exposure vs timing in every segment."""
    table = pd.DataFrame({k: a.as_dict() for k, a in f.attribution.items()}).T
    timing_gate = "off" if gates.max_timing_p is None else f"test timing p <= {gates.max_timing_p}"
    return Section("6b. Return attribution: market exposure vs timing").add(
        "Gross P&L (sum of per-bar returns, before costs) = market exposure (bars x mean position x mean "
        "market return: the drift any constant position of that size earns) + timing (bars x covariance "
        "of the position with the next return: what moving the position earned). Shares are of "
        "|exposure| + |timing|. p-values are one-sided, Newey-West (HAC) errors: timing from the OLS slope "
        "of r[t+1] on the position, exposure from the mean market return in the direction of the mean "
        f"position. Timing gate: {timing_gate}.",
        table[_ATTRIBUTION_COLUMNS],
    )


def verdict_section(verdict: Verdict) -> Section:
    """7. The verdict, its reasons and warnings, and every gate's outcome."""
    s = Section("7. Verdict")
    s.add(f"**{'PASS' if verdict.passed else 'FAIL'}**")
    if verdict.reasons:
        s.add("Reasons:", "\n".join(f"- {r}" for r in verdict.reasons))
    if verdict.warnings:
        s.add("Warnings:", "\n".join(f"- {w}" for w in verdict.warnings))
    return s.add(pd.DataFrame({"passed": verdict.checks}).rename_axis("gate"))
