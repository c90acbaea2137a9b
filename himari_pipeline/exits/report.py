"""The exit report: one section per item of the evaluation, as Markdown and as a self-contained HTML
page (:func:`~himari_pipeline.evaluation.html.render_html`), and the lake's rows.

Sections: setup and segments; per-trade metrics against the baselines on every segment (mean return,
win rate, profit factor, Sharpe, holding lengths, quick exits, exit reasons: agent / stop-loss /
take-profit / time); holding-length bins; the subject's action distribution and blocked rate;
significance (permutation over holding lengths on test and live, the Deflated Sharpe and its trials);
look-ahead checks (observation truncation, each observation column against the next bar's return);
training (steps, reward scale, the validation history) when a policy was trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from himari_pipeline.evaluation.html import render_html
from himari_pipeline.exits.verdict import HOLDING_BINS, ExitEvaluation


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # str (Markdown subset) or DataFrame


def _pct(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.2%}"


def exit_sections(ev: ExitEvaluation) -> list[Section]:
    """Every section of the report (see the module doc)."""
    c, e = ev.config, ev.evidence
    setup = Section("Setup", [
        f"Subject `{ev.subject}`: {ev.note}",
        f"Data `{ev.data}` ({ev.bars_per_year:g} bars a year). Initial stop {c.stop_loss:.2%}, take-profit "
        f"{c.take_profit:.2%}, exits allowed from bar {c.min_exit_bar}, at most {c.max_hold} bars held, "
        f"{c.transaction_cost * 1e4:g} bp per fill; a bar touching both levels fills the stop.",
        "\n".join(f"- {s}: {a} .. {b}" for s, (a, b) in ev.bounds.items()),
    ])  # fmt: skip
    table = ev.table.copy()
    metrics = Section("Per-trade metrics against the baselines (net of costs)", [
        "Returns are fractions of the entry notional. Sharpe (annualized) = per-trade Sharpe x sqrt(trades "
        "a year). `fixed_stops`: hold with the initial stops to max hold; `time_exit`: exit after "
        f"{c.max_hold // 2} bars; `trailing_stop`: tighten every bar; `random_exit`: exits at lengths drawn "
        "from the subject's own.",
        table.round(4),
    ])  # fmt: skip
    holding = pd.DataFrame(ev.holding).T[list(HOLDING_BINS)]
    lengths = Section("Holding lengths", [
        f"Shares of the subject's trades by holding length: quick <= {c.min_exit_bar} bars, short <= "
        f"{c.max_hold // 4}, medium <= {c.max_hold // 2}, long < {c.max_hold}, full = {c.max_hold}. All "
        "trades in one bin is a collapse (log 002: every exit at bar 0); the train -> live drift of these "
        "shares is the action-drift gate.",
        holding.round(3),
    ])  # fmt: skip
    acts = pd.DataFrame(ev.actions).T
    acts["blocked_rate"] = pd.Series(ev.blocked_rate)
    actions = Section("Actions and masks", [
        "Share of the subject's decisions per action, and the share of actions the env had to block "
        "(0 when the policy respects the masks: EXIT/PARTIAL before the minimum bar, PARTIAL once, "
        "TRAIL_BE only in profit).",
        acts.round(4),
    ])  # fmt: skip
    sig = Section("Significance", [
        f"- permutation p: test **{e['permutation_p']:.3f}**, live **{e['live_permutation_p']:.3f}** "
        "(both gated). The null: the same trades exited at a permutation of the subject's own holding "
        "lengths (stops still apply); p = the share of permutations whose mean trade return reaches "
        "the subject's.\n"
        f"- Deflated Sharpe (validation trades, {len(ev.trials)} trial(s)): **{e['dsr']:.3f}**",
        ev.trials.round(4),
    ])  # fmt: skip
    leaks = pd.DataFrame(e["leak_correlations"]).T
    look = Section("Look-ahead checks", [
        f"- observation truncation invariance: **{e['truncation_invariant']}** (each decision's observation "
        "equals the one computed on the bars cut right after its bar)\n"
        "- each observation column against the next bar's side-adjusted return (a leak of bar k+1 into "
        "decision k correlates about 1):",
        leaks.round(4) if len(leaks) else "no varying observation column",
    ])  # fmt: skip
    sections = [setup, metrics, lengths, actions, sig, look]
    x = ev.extra
    if "steps" in x:
        hist = pd.DataFrame(x["eval_history"])
        keep = [k for k in ("step", "greedy_mean_return", "greedy_sharpe", "greedy_avg_holding",
                            "greedy_share_exit", "greedy_blocked_rate") if k in hist.columns]  # fmt: skip
        rs = {k: float((x.get("reward_scale") or {}).get(k, np.nan)) for k in ("mean", "std", "abs_max")}
        sections.append(Section("Training", [
            f"Experiment `{x['experiment']}` (config {x['config_hash'][:12]}), {x['steps']} steps, selected "
            f"`{x['checkpoint']}`. Blocked rate in training: {x['train_blocked_rate']:.4f}. Reward scale of "
            f"the first rollout: mean {rs['mean']:.4f}, std {rs['std']:.4f}, max |r| {rs['abs_max']:.3f}.",
            hist[keep].round(4) if keep else "no validation",
        ]))  # fmt: skip
    return sections


def _markdown_table(df: pd.DataFrame) -> str:
    if isinstance(df.index, pd.MultiIndex):
        return df.reset_index().to_markdown(index=False)
    return df.to_markdown()


def exit_markdown(ev: ExitEvaluation) -> str:
    verdict = "PASS" if ev.verdict.passed else "FAIL"
    lines = [f"# Exit optimizer `{ev.subject}` on {ev.data}: {verdict}", "", "## Verdict", ""]
    lines += [f"- FAIL: {r}" for r in ev.verdict.reasons] or ["- every gate passed"]
    lines += [f"- warning: {w}" for w in ev.verdict.warnings]
    for s in exit_sections(ev):
        lines += ["", f"## {s.title}", ""]
        lines += [_markdown_table(b) if isinstance(b, pd.DataFrame) else b for b in s.blocks]
    num = {k: v for k, v in ev.evidence.items() if isinstance(v, float | int | bool)}
    lines += ["", "## Evidence", "", "```json", json.dumps(num, indent=1, default=float), "```", ""]
    return "\n".join(lines)


def exit_html(ev: ExitEvaluation) -> str:
    return render_html(
        f"Exit optimizer {ev.subject} on {ev.data}",
        ev.verdict.passed,
        ev.verdict.reasons,
        ev.verdict.warnings,
        exit_sections(ev),
        meta=f"gate checks: {sum(ev.verdict.checks.values())}/{len(ev.verdict.checks)} passed",
    )


SUMMARY_NUMBERS = (
    "dsr", "permutation_p", "live_permutation_p", "validation_sharpe", "test_sharpe", "live_sharpe",
    "live_buy_and_hold_sharpe", "live_max_drawdown", "test_mean_return", "test_blocked_rate",
)  # fmt: skip


def exit_tables(ev: ExitEvaluation, key: str, report_path: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The lake's rows: ``exit_metrics`` (one row per segment and strategy) and ``exit_summary`` (one
    row: the subject's verdict and evidence)."""
    metrics = ev.table.reset_index()
    metrics.insert(0, "key", key)
    metrics["is_subject"] = metrics["strategy"] == ev.subject
    e, x = ev.evidence, ev.extra
    row = {
        "key": key,
        "data": ev.data,
        "subject": ev.subject,
        "experiment": x.get("experiment", ""),
        "verdict": "PASS" if ev.verdict.passed else "FAIL",
        "reasons": "; ".join(ev.verdict.reasons),
        "warnings": "; ".join(ev.verdict.warnings),
        **{k: float(e[k]) for k in SUMMARY_NUMBERS},
        "test_trades": int(ev.table.loc[("test", ev.subject), "trades"]),
        "test_fixed_stops_mean_return": float(ev.table.loc[("test", "fixed_stops"), "mean_return"]),
        "steps": int(x.get("steps", 0)),
        "config": json.dumps(asdict(ev.config)),
        "report_path": report_path,
    }
    return metrics, pd.DataFrame([row])
