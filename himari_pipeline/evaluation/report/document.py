"""The report as a document: sections of text, tables and plots; Markdown, HTML and the contract tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from himari_pipeline.evaluation import html as html_mod
from himari_pipeline.evaluation.report.evidence import Evidence
from himari_pipeline.evaluation.verdict import Verdict
from himari_pipeline.storage.atomic import atomic_write_text

__all__ = ["METRICS_COLUMNS", "SUMMARY_COLUMNS", "Plot", "Section", "ValidationReport"]

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
    "checkpoint_path",
)


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


@dataclass
class ValidationReport:
    experiment: str
    dataset: str
    checkpoint_step: int
    checkpoint_path: str
    evidence: Evidence
    verdict: Verdict
    sections: list[Section]
    metrics: pd.DataFrame  # long format rows (section, subject, regime, metric, value)
    n_checkpoints: int
    bars_per_year: float
    report_path: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def is_strategy(self) -> bool:
        return self.experiment.startswith("strategy:")

    @property
    def plots(self) -> list[Plot]:
        return [p for s in self.sections for p in s.plots]

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
        row = {
            **ident,
            "verdict": "PASS" if self.verdict.passed else "FAIL",
            "reasons": "; ".join(self.verdict.reasons),
            "warnings": "; ".join(self.verdict.warnings),
            "n_checkpoints": self.n_checkpoints,
            "val_sharpe": float(ev.validation_sharpe),
            "test_sharpe": float(ev.test_sharpe),
            "live_sharpe": float(ev.live_sharpe),
            "live_bh_sharpe": float(ev.live_buy_and_hold_sharpe),
            "live_max_drawdown": float(ev.live_max_drawdown),
            "live_final_value": float(ev.live_final_value),
            "psr": float(ev.psr),
            "dsr": float(ev.dsr),
            "pbo": float(ev.pbo),
            "perm_pvalue": float(ev.permutation_p),
            "leak_flags": ev.leak_flags,
            "report_path": report_path if report_path is not None else self.report_path,
            "bars_per_year": float(self.bars_per_year),
            "checkpoint_path": str(self.checkpoint_path),
        }
        vs = pd.DataFrame([row], columns=list(SUMMARY_COLUMNS)).astype(
            {"checkpoint_step": "int64", "n_checkpoints": "int64", "leak_flags": "int64"}
        )
        return {"validation_metrics": vm, "validation_summary": vs}

    @property
    def title(self) -> str:
        if self.is_strategy:
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
        if self.is_strategy:
            meta = f"positions {Path(self.checkpoint_path).name}; {self.n_checkpoints} variant(s) tried"
        return html_mod.render_html(self.title, v.passed, v.reasons, v.warnings, self.sections, meta)

    def write_html(self, path: str | Path) -> Path:
        out = atomic_write_text(path, self.to_html())
        self.report_path = str(path)
        return out
