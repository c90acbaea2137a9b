"""Dagster metadata helpers: lake versions, previews, named plots, numbers rounded for people."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Mapping

import dagster as dg
import numpy as np
import pandas as pd

from himari_pipeline.storage.lake import Version


def version_metadata(v: Version) -> dict:
    """What every materialization shows: its version, its inputs' versions, code version and run."""
    meta = {
        "lake_version": dg.MetadataValue.text(v.short),
        "lake_snapshot_id": dg.MetadataValue.int(v.snapshot_id),
        "code_version": dg.MetadataValue.text(v.code_version),
        "input_versions": dg.MetadataValue.json(v.inputs or {}),
    }
    if v.row_count is not None:  # a document (report, archive) has no rows to count
        meta["rows"] = meta["dagster/row_count"] = dg.MetadataValue.int(v.row_count)
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
    """A MaterializeResult carrying the lake version as the Dagster data version (floats rounded)."""
    return dg.MaterializeResult(
        asset_key=asset_key,
        data_version=dg.DataVersion(v.short),
        metadata=rounded_metadata({**version_metadata(v), **extra}),
    )


SIGNIFICANT_DIGITS = 4


def rounded(x: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``x`` to ``digits`` significant digits (0.000999000999 -> 0.000999); NaN and inf unchanged."""
    x = float(x)
    return x if not math.isfinite(x) or x == 0 else float(f"{x:.{digits}g}")


def _round_any(value):
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, float | np.floating):
        return rounded(value)
    if isinstance(value, Mapping):
        return {k: _round_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round_any(v) for v in value]
    return value


def rounded_metadata(meta: Mapping) -> dict:
    """Metadata with every float (plain, ``MetadataValue.float`` or inside JSON) rounded for display."""
    out = {}
    for key, value in meta.items():
        if isinstance(value, dg.FloatMetadataValue) and value.value is not None:
            value = dg.MetadataValue.float(rounded(value.value))
        elif isinstance(value, dg.JsonMetadataValue):
            value = dg.MetadataValue.json(_round_any(value.data))
        elif isinstance(value, float | np.floating) and not isinstance(value, bool):
            value = dg.MetadataValue.float(rounded(value))
        out[key] = value
    return out


def fmt_number(value) -> str:
    """A cell for a Markdown table: floats to 4 significant digits, everything else as is."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        x = rounded(value)
        if math.isfinite(x) and (x == 0 or 1e-4 <= abs(x) < 1e15):
            return np.format_float_positional(x, trim="-")  # 12350, 0.000999: no exponent
        return f"{x:.{SIGNIFICANT_DIGITS}g}"
    return str(value)


def md_table(df: pd.DataFrame, index: bool = True) -> dg.MetadataValue:
    """A DataFrame as a Markdown table with rounded numbers (mixed-type columns included)."""
    return dg.MetadataValue.md(df.map(fmt_number).to_markdown(index=index))


def plot_key(plot) -> str:
    """The metadata key of a report plot: its ``name`` or a slug of its caption, prefixed ``plot_``."""
    name = getattr(plot, "name", "") or re.sub(r"[^a-z0-9]+", "_", plot.caption.lower()).strip("_")
    return f"plot_{name}"


def plot_metadata(plots: Iterable) -> dict[str, dg.MetadataValue]:
    """Every plot (objects with ``caption``, ``png`` and optionally ``name``) under its own named key."""
    out: dict[str, dg.MetadataValue] = {}
    for p in plots:
        key = plot_key(p)
        while key in out:  # two plots with one name: keep both
            key += "_"
        out[key] = png(p.png, p.caption)
    return out
