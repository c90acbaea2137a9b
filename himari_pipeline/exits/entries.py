"""Entries for the exit optimizer: a breakout rule shipped with the project, a user's file, a trained
policy's positions, and the split by time.

``breakout_entries``: long at bar ``t``'s close when it closes above the highest high of the previous
``lookback`` bars, short when it closes below their lowest low; decided from bars ``<= t`` only, and
no new entry within ``min_gap`` bars of the previous one. ``split_entries`` keeps, per segment of the
dataset's splits, the entries whose whole holding window (``max_hold`` bars after the entry) lies
inside the segment, so no trade of one segment reads a bar of the next (the splits' embargo stays
between them). ``read_entries`` reads a user's ``timestamp,side`` file (CSV or Parquet; the bar close,
UTC, as the lake stores it; side ``1``/``-1``/``long``/``short``) and names file, row and rule for a bad
one; ``entries_from_positions`` takes a strategy's positions (an entry wherever a position opens or
flips side).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.evaluation.timestamped import read_timestamped, rule_error

_SIDES = {"1": 1, "+1": 1, "1.0": 1, "long": 1, "-1": -1, "-1.0": -1, "short": -1}


class EntriesError(ValueError):
    """An entries file broke a rule; the message names file, row and rule."""


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


def read_entries(path: str | Path, bar_timestamps: np.ndarray) -> pd.DataFrame:
    """``entry_bar`` and ``side`` of a user's file against the dataset's bar close times (int64 ns UTC)."""
    path = Path(path)
    frame, ns = read_timestamped(path, ("timestamp", "side"), EntriesError)
    side = frame["side"].astype(str).str.strip().str.lower().map(_SIDES)
    bad = np.flatnonzero(side.isna().to_numpy())
    if len(bad):
        detail = f"{frame['side'].iloc[bad[0]]!r} is not 1, -1, long or short"
        raise rule_error(EntriesError, path, int(bad[0]) + 1, "bad_side", detail)
    bars = np.asarray(bar_timestamps, dtype=np.int64)
    at = np.searchsorted(bars, ns)
    unknown = np.flatnonzero((at >= len(bars)) | (bars[np.minimum(at, len(bars) - 1)] != ns))
    if len(unknown):
        when = pd.Timestamp(ns[unknown[0]], tz="UTC")
        detail = f"{when} is not a bar close of the dataset"
        raise rule_error(EntriesError, path, int(unknown[0]) + 1, "unknown_timestamp", detail)
    out = pd.DataFrame({"entry_bar": at.astype(np.int64), "side": side.to_numpy().astype(np.int8)})
    return out.sort_values("entry_bar", kind="stable").reset_index(drop=True)


def entries_from_positions(positions: np.ndarray) -> pd.DataFrame:
    """An entry at every bar where the position opens from flat or flips side (its sign is the side)."""
    sign = np.sign(np.asarray(positions, dtype=np.float64))
    before = np.r_[0.0, sign[:-1]]
    bars = np.flatnonzero((sign != 0) & (sign != before))
    return pd.DataFrame({"entry_bar": bars.astype(np.int64), "side": sign[bars].astype(np.int8)})
