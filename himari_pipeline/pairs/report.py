"""The pair report as Markdown and files: the verdict, log 004's table, the selection, attribution."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.pairs.evaluate import PairEvaluation

_HEADERS = {
    "final_value": "final value",
    "cumulative_return": "cumulative return",
    "sharpe": "Sharpe (ann.)",
    "turnover_per_bar": "avg turnover / bar",
    "max_drawdown": "max drawdown",
    "avg_bar_return": "avg return / bar",
    "avg_daily_return": "avg daily return",
    "annual_return": "annualized return",
}


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.4f}"


def _table(frame: pd.DataFrame, index_names: list[str]) -> list[str]:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(index_names + [_HEADERS.get(c, c) for c in cols]) + " |"]
    lines.append("|" + "---|" * (len(index_names) + len(cols)))
    for key, row in frame.iterrows():
        keys = list(key) if isinstance(key, tuple) else [key]
        lines.append("| " + " | ".join([*map(str, keys), *(_fmt(float(row[c])) for c in cols)]) + " |")
    return lines


def pair_markdown(ev: PairEvaluation) -> str:
    """The whole report."""
    cfg = ev.config
    name = "/".join(ev.legs)
    verdict = "PASS" if ev.verdict.passed else "FAIL"
    lines = [
        f"# Pair {name}: {verdict}",
        "",
        f"Long spread = long {ev.legs[0]}, short beta x {ev.legs[1]} (gross {cfg.leverage}x at a full "
        f"position); hedge `{cfg.spread.hedge}`, window {cfg.spread.window}, z-window {cfg.spread.z_window}; "
        f"costs {cfg.transaction_cost * 1e4:g} bp per leg's traded notional, borrow "
        f"{cfg.borrow_rate_annual:.2%} a year on the short leg, {ev.bars_per_year:g} bars a year. "
        f"Bars dropped by the missing-leg rule: {ev.dropped_bars}.",
        "",
        "## Verdict",
        "",
    ]
    lines += [f"- FAIL: {r}" for r in ev.verdict.reasons] or ["- every gate passed"]
    lines += [f"- warning: {w}" for w in ev.verdict.warnings]
    lines += ["", "## Segments", ""]
    lines += [f"- {s}: {a} .. {b}" for s, (a, b) in ev.bounds.items()]
    lines += ["", "## Results (log 004's table) against the baselines", ""]
    lines += _table(ev.table, ["segment", "strategy"])
    lines += [
        "",
        "## Selection",
        "",
        f"`{ev.subject}`: {ev.selected}. Every trial below counts in the Deflated Sharpe "
        f"({ev.evidence['dsr']:.4f}).",
        "",
    ]
    lines += _table(ev.trials, ["trial"])
    lines += ["", "## Attribution of the selected rule (exposure to the spread's drift vs timing)", ""]
    attr = pd.DataFrame.from_dict(ev.attribution, orient="index")
    if len(attr.columns):
        keep = ["mean_exposure", "exposure_share", "timing_share", "exposure_p", "timing_p"]
        lines += _table(attr[[c for c in keep if c in attr.columns]], ["segment"])
    ev_num = {k: v for k, v in ev.evidence.items() if isinstance(v, float | int | bool)}
    lines += ["", "## Evidence", "", "```json", json.dumps(ev_num, indent=1, default=float), "```", ""]
    return "\n".join(lines)


def write_pair_report(ev: PairEvaluation, out_dir: str | Path) -> dict[str, Path]:
    """``report.md``, ``table.csv`` and ``evaluation.json`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.md", "table": out / "table.csv", "json": out / "evaluation.json"}
    paths["report"].write_text(pair_markdown(ev))
    ev.table.to_csv(paths["table"])
    summary = {
        "legs": list(ev.legs),
        "verdict": "PASS" if ev.verdict.passed else "FAIL",
        "reasons": ev.verdict.reasons,
        "checks": ev.verdict.checks,
        "subject": ev.subject,
        "selected": ev.selected,
        "evidence": {k: v for k, v in ev.evidence.items() if not isinstance(v, dict)},
        "config": dataclasses.asdict(ev.config),
        "bounds": ev.bounds,
    }
    paths["json"].write_text(json.dumps(summary, indent=1, default=float))
    return paths


def pair_tables(ev: PairEvaluation, pair: str, report_path: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The lake's rows: ``pair_metrics`` (log 004's table, one row per segment and strategy) and
    ``pair_summary`` (one row: verdict and evidence of the judged strategy)."""
    metrics = ev.table.reset_index()
    metrics.insert(0, "pair", pair)
    metrics.insert(1, "leg_y", ev.legs[0])
    metrics.insert(2, "leg_x", ev.legs[1])
    metrics["is_subject"] = metrics["strategy"] == ev.subject
    e = ev.evidence
    summary = pd.DataFrame(
        [
            {
                "pair": pair,
                "leg_y": ev.legs[0],
                "leg_x": ev.legs[1],
                "subject": ev.subject,
                "selected": ev.selected,
                "verdict": "PASS" if ev.verdict.passed else "FAIL",
                "reasons": "; ".join(ev.verdict.reasons),
                "warnings": "; ".join(ev.verdict.warnings),
                **{k: float(e[k]) for k in _SUMMARY_NUMBERS},
                "hedge": ev.config.spread.hedge,
                "leverage": ev.config.leverage,
                "transaction_cost": ev.config.transaction_cost,
                "borrow_rate_annual": ev.config.borrow_rate_annual,
                "bars_per_year": ev.bars_per_year,
                "dropped_bars": ev.dropped_bars,
                "report_path": report_path,
            }
        ]
    )
    return metrics, summary


_SUMMARY_NUMBERS = (
    "dsr",
    "permutation_p",
    "validation_sharpe",
    "test_sharpe",
    "live_sharpe",
    "live_buy_and_hold_sharpe",
    "live_max_drawdown",
    "timing_p",
)
