"""Mechanical proof of causality: truncation invariance.

A table computed from ``bars[:k]`` must give exactly the rows the full computation gives for the
same timestamps. Two checks, both bit-exact:

* :func:`check_truncation_invariance` recomputes whole prefixes ``bars[:k]`` for a few ``k``: it
  catches what changes many rows (a centred window, a backfill, a full-sample statistic);
* :func:`check_every_row` compares every row ``t`` with the row computed from ``bars[:t+1]`` alone
  (its trailing window and the recursion states before it, :mod:`himari_pipeline.every_row`):
  every cut point is tested, so a look-ahead confined to one row is caught and named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class TruncationReport:
    """Outcome of a truncation-invariance test."""

    prefixes: list[int]
    ok: bool
    mismatches: list[dict] = field(default_factory=list)

    every_row_from: int | None = None  # check_every_row: rows from here to the end were compared
    rows_checked: int = 0

    def summary(self) -> str:
        what = (
            f"every row from row {self.every_row_from} ({self.rows_checked} rows, each computed from the "
            "bars up to it)"
            if self.every_row_from is not None
            else f"{len(self.prefixes)} prefixes {self.prefixes}"
        )
        if self.ok:
            return f"identical rows on {what}"
        first = self.mismatches[0]
        return (
            f"{len(self.mismatches)} column(s) differ on {what}; first: column {first['column']!r} at row "
            f"{first['row']} ({first['timestamp']}) from the prefix of k={first['k']} bars: "
            f"full={first['full']!r} prefix={first['prefix']!r} ({first['n_diff']} rows differ)"
        )


def _differences(full: pd.DataFrame, part: pd.DataFrame, atol: float = 0.0):
    """``(column, row positions, full values, part values)`` for each column of ``part`` that differs."""
    for col in part.columns:
        a = full[col].to_numpy()
        b = part[col].to_numpy()
        if a.dtype.kind in "fcb" or b.dtype.kind in "fcb":
            a = a.astype(float)
            b = b.astype(float)
            same = (np.abs(a - b) <= atol) | (np.isnan(a) & np.isnan(b))
        else:
            same = a == b
        if not same.all():
            yield col, np.flatnonzero(~same), a, b


def _item(x):
    return x.item() if hasattr(x, "item") else x


def check_every_row(
    stepped: pd.DataFrame, full: pd.DataFrame, start: int = 0, key: str = "timestamp"
) -> TruncationReport:
    """Compare ``stepped`` (rows ``start..``, row ``t`` computed from ``bars[:t+1]`` alone) with the
    stored ``full`` table, bit for bit (NaN matching NaN); a mismatch names the column and the row."""
    ref = full.iloc[start:].reset_index(drop=True)
    if len(stepped) != len(ref) or not (stepped[key].to_numpy() == ref[key].to_numpy()).all():
        raise ValueError(
            f"check_every_row: {len(stepped)} stepped rows do not line up with rows {start}.. of the "
            f"stored table ({len(ref)} rows)"
        )
    mismatches = []
    for col, rows, a, b in _differences(ref, stepped.drop(columns=[key])):
        r = int(rows[0])
        mismatches.append(
            {
                "k": start + r + 1,
                "column": col,
                "row": start + r,
                "timestamp": str(stepped[key].iloc[r]),
                "full": _item(a[r]),
                "prefix": _item(b[r]),
                "n_diff": len(rows),
            }
        )
    mismatches.sort(key=lambda m: m["row"])
    return TruncationReport(
        prefixes=[], ok=not mismatches, mismatches=mismatches, every_row_from=start, rows_checked=len(ref)
    )


def default_prefixes(n: int, count: int = 8, min_rows: int = 50, seed: int = 0) -> list[int]:
    """``count`` prefix lengths spread over ``[min_rows, n)``: evenly spaced plus random ones."""
    if n <= min_rows + 1:
        return [n]
    rng = np.random.default_rng(seed)
    even = np.linspace(min_rows, n - 1, num=max(count // 2, 1), dtype=int)
    rand = rng.integers(min_rows, n, size=count - len(even))
    return sorted({int(k) for k in np.concatenate([even, rand])})


def check_truncation_invariance(
    compute: Callable[[pd.DataFrame], pd.DataFrame],
    bars: pd.DataFrame,
    full: pd.DataFrame | None = None,
    prefixes: Sequence[int] | None = None,
    key: str = "timestamp",
    atol: float = 0.0,
) -> TruncationReport:
    """Recompute ``compute(bars[:k])`` for each ``k`` and compare with the full result row by row.

    ``compute`` returns a frame with a ``key`` column. Values must match exactly (``atol=0``), NaN
    matching NaN; ``full`` may be passed when already computed (e.g. the stored table).
    """
    if full is None:
        full = compute(bars)
    ks = list(prefixes) if prefixes is not None else default_prefixes(len(bars))
    full_idx = full.set_index(key)
    mismatches: list[dict] = []
    for k in ks:
        part = compute(bars.iloc[:k].reset_index(drop=True)).set_index(key)
        ref = full_idx.loc[part.index]
        for col, rows, a, b in _differences(ref, part, atol):
            row = int(rows[0])
            mismatches.append(
                {
                    "k": k,
                    "column": col,
                    "row": row,
                    "timestamp": str(part.index[row]),
                    "full": _item(a[row]),
                    "prefix": _item(b[row]),
                    "n_diff": len(rows),
                }
            )
    return TruncationReport(prefixes=ks, ok=not mismatches, mismatches=mismatches)
