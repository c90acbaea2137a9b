"""Entries for the exit optimizer: a breakout rule shipped with the project, and the split by time.

``breakout_entries``: long at bar ``t``'s close when it closes above the highest high of the previous
``lookback`` bars, short when it closes below their lowest low; decided from bars ``<= t`` only, and
no new entry within ``min_gap`` bars of the previous one. ``split_entries`` keeps, per segment of the
dataset's splits, the entries whose whole holding window (``max_hold`` bars after the entry) lies
inside the segment, so no trade of one segment reads a bar of the next (the splits' embargo stays
between them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def breakout_entries(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, lookback: int = 20, min_gap: int = 10
) -> pd.DataFrame:
    """``entry_bar`` and ``side`` (+1 / -1) of every breakout (see the module doc)."""
    if lookback < 1 or min_gap < 0:
        raise ValueError("need lookback >= 1 and min_gap >= 0")
    hi = pd.Series(np.asarray(high, dtype=np.float64)).rolling(lookback).max().shift(1).to_numpy()
    lo = pd.Series(np.asarray(low, dtype=np.float64)).rolling(lookback).min().shift(1).to_numpy()
    c = np.asarray(close, dtype=np.float64)
    side = np.where(c > hi, 1, np.where(c < lo, -1, 0))
    bars, sides, last = [], [], -(10**9)
    for t in np.flatnonzero(side):
        if t - last >= max(min_gap, 1):
            bars.append(int(t))
            sides.append(int(side[t]))
            last = t
    return pd.DataFrame(
        {"entry_bar": np.asarray(bars, dtype=np.int64), "side": np.asarray(sides, dtype=np.int8)}
    )


def split_entries(
    entries: pd.DataFrame, ranges: dict[str, tuple[int, int]], max_hold: int
) -> dict[str, pd.DataFrame]:
    """Per segment (``ranges``: name -> [lo, hi) bar rows), the entries with ``lo <= e`` and
    ``e + max_hold < hi``."""
    e = entries["entry_bar"].to_numpy()
    return {
        name: entries[(e >= lo) & (e + max_hold < hi)].reset_index(drop=True)
        for name, (lo, hi) in ranges.items()
    }
