"""Mechanical proof of causality: truncation invariance.

A table computed from ``bars[:k]`` must give exactly the rows the full computation gives for the
same timestamps, for many ``k``. A feature that peeks at a later bar (a centred window, a backfill,
a full-sample statistic) changes its early rows when later bars are dropped, and is caught here.
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

    def summary(self) -> str:
        if self.ok:
            return f"identical rows on {len(self.prefixes)} prefixes {self.prefixes}"
        first = self.mismatches[0]
        return (
            f"{len(self.mismatches)} column(s) differ; first: column {first['column']!r} on prefix "
            f"k={first['k']} at row {first['row']} ({first['timestamp']}): full={first['full']!r} "
            f"prefix={first['prefix']!r}"
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
        for col in part.columns:
            a = ref[col].to_numpy()
            b = part[col].to_numpy()
            if a.dtype.kind in "fc" or b.dtype.kind in "fc":
                a = a.astype(float)
                b = b.astype(float)
                same = (np.abs(a - b) <= atol) | (np.isnan(a) & np.isnan(b))
            else:
                same = a == b
            if not same.all():
                row = int(np.flatnonzero(~same)[0])
                mismatches.append(
                    {
                        "k": k,
                        "column": col,
                        "row": row,
                        "timestamp": str(part.index[row]),
                        "full": a[row].item() if hasattr(a[row], "item") else a[row],
                        "prefix": b[row].item() if hasattr(b[row], "item") else b[row],
                        "n_diff": int((~same).sum()),
                    }
                )
    return TruncationReport(prefixes=ks, ok=not mismatches, mismatches=mismatches)
