"""Dagster metadata helpers: lake versions, previews, plots."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd

from himari_pipeline.storage.lake import Version


def version_metadata(v: Version) -> dict:
    """What every materialization shows: its version, its inputs' versions, code version and run."""
    meta = {
        "lake_version": dg.MetadataValue.text(v.short),
        "lake_snapshot_id": dg.MetadataValue.int(v.snapshot_id),
        "rows": dg.MetadataValue.int(v.row_count),
        "code_version": dg.MetadataValue.text(v.code_version),
        "input_versions": dg.MetadataValue.json(v.inputs or {}),
    }
    if v.path:
        meta["path"] = dg.MetadataValue.path(v.path)
    return meta


def preview(df: pd.DataFrame, n: int = 5, max_cols: int = 12) -> dg.MetadataValue:
    """First and last rows as a Markdown table."""
    cols = list(df.columns[:max_cols])
    sample = pd.concat([df[cols].head(n), df[cols].tail(n)])
    return dg.MetadataValue.md(sample.to_markdown(floatfmt=".5g"))


def png(data: bytes, alt: str = "plot") -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})")


def result(v: Version, asset_key: str | None = None, **extra) -> dg.MaterializeResult:
    """A MaterializeResult carrying the lake version as the Dagster data version."""
    return dg.MaterializeResult(
        asset_key=asset_key, data_version=dg.DataVersion(v.short), metadata={**version_metadata(v), **extra}
    )
