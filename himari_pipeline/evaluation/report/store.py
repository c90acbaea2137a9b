"""The report's files in the lake: the HTML page, optionally its Markdown, and its two tables."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from himari_pipeline.evaluation.report.document import ValidationReport
from himari_pipeline.storage.atomic import atomic_write_text
from himari_pipeline.storage.lake import Lake, Version

__all__ = ["StoredReport", "store_report"]


@dataclass
class StoredReport:
    """The versions written: the HTML page, the Markdown (when asked for) and each table."""

    html: Version
    markdown: Version | None
    tables: dict[str, Version]  # lake table name -> version
    frames: dict[str, pd.DataFrame]  # report table name -> the rows written

    def html_path(self, store: Lake) -> Path:
        return store.root / self.html.path


def store_report(
    store: Lake,
    report: ValidationReport,
    *,
    asset: str,
    partition: str,
    inputs: Mapping[str, str],
    tables: Mapping[str, str],
    code_version: str,
    run_id: str = "",
    markdown: bool = False,
) -> StoredReport:
    """Write ``report`` as ``asset`` (HTML) and its tables, each recorded with its inputs.

    ``tables`` maps each lake table to the report's table it holds (``validation_metrics`` or
    ``validation_summary``); the summary's ``report_path`` is the HTML's place in the lake. With
    ``markdown``, the Markdown is written too, as ``<asset>_markdown``.
    """
    md_v = None
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        html = report.write_html(Path(tmp) / f"{asset}.html")
        v = store.write_file(
            asset,
            partition,
            html,
            inputs=dict(inputs),
            code_version=code_version,
            run_id=run_id,
            metadata={"verdict": report.verdict.passed},
        )
        if markdown:
            md = Path(tmp) / f"{asset}.md"
            atomic_write_text(md, report.to_markdown())
            md_v = store.write_file(
                f"{asset}_markdown", partition, md, inputs={asset: v.version}, run_id=run_id
            )
    frames = report.tables(report_path=v.path)
    written = {
        name: store.write_table(
            name, partition, frames[src], inputs={asset: v.version}, code_version=code_version, run_id=run_id
        )
        for name, src in tables.items()
    }
    return StoredReport(v, md_v, written, frames)
