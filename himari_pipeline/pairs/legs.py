"""The legs of a pair: read their closes and align them on common bars.

Missing-leg rule (one rule, stored with the aligned bars): the pair trades only on bars where every
leg has a close. Inside the span where all legs exist (from the latest first bar to the earliest last
bar), a bar that some leg lacks is dropped for every leg, never forward-filled; the next common bar's
returns are close to close, so they span the dropped bar, and its ``gap_before`` counts it, so carry
and borrow are charged for its time as for any missing bar (:mod:`himari_pipeline.trading.rules`).
Every dropped bar is listed in :attr:`AlignedLegs.dropped` with the legs it lacked. Bars before a
leg's first close or after its last are outside the pair's history, not gaps.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.market.bars import parse_dataset_key, timeframe_delta, validate_name
from himari_pipeline.market.calendars import bars_per_year as calendar_bars_per_year
from himari_pipeline.market.calendars import expected_closes
from himari_pipeline.market.readers import read_bars_files
from himari_pipeline.market.validation import BarValidationError, validate_bars

PAIR_SEP = "+"
MONTHLY = "1mo"
"""A timeframe only pairs accept: bars labelled by the first day of their month, 12 a year."""


@dataclass
class AlignedLegs:
    """Closes of every leg on the common bars, ``gap_before`` per bar and the dropped bars."""

    timestamps: pd.DatetimeIndex  # (T,) UTC
    closes: pd.DataFrame  # (T, K), one column per leg, index = timestamps
    gap_before: np.ndarray  # (T,) int64: bars dropped just before bar i (some leg lacked them)
    dropped: pd.DataFrame  # timestamp, missing (comma-separated legs)
    bars_per_year: float

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.closes.columns)

    @property
    def returns(self) -> np.ndarray:
        """(T, K) close-to-close returns per leg (row 0 NaN)."""
        c = self.closes.to_numpy(np.float64)
        out = np.full_like(c, np.nan)
        out[1:] = c[1:] / c[:-1] - 1.0
        return out


def pair_bars_per_year(timeframe: str, calendar: str) -> float:
    """Bars a year: the calendar's for a bar timeframe, 12 for monthly bars."""
    if timeframe == MONTHLY:
        return 12.0
    return calendar_bars_per_year(calendar, timeframe)


def align_legs(
    closes: Mapping[str, pd.Series], bars_per_year: float, expected: pd.DatetimeIndex | None = None
) -> AlignedLegs:
    """Align leg closes (each indexed by UTC bar timestamps, NaN = missing) by the missing-leg rule.

    ``gap_before[i]`` counts the ``expected`` bars (the calendar's; None: every bar some leg has)
    strictly between common bars ``i-1`` and ``i``."""
    if len(closes) < 2:
        raise ValueError(f"a pair needs at least 2 legs, got {len(closes)}")
    for name in closes:
        validate_name("leg", name)
    frame = pd.concat({k: v.dropna() for k, v in closes.items()}, axis=1, join="outer").sort_index()
    firsts = [frame[c].first_valid_index() for c in frame]
    lasts = [frame[c].last_valid_index() for c in frame]
    if any(f is None for f in firsts):
        raise ValueError(f"leg {frame.columns[firsts.index(None)]!r} has no closes")
    lo, hi = max(firsts), min(lasts)
    if lo >= hi:
        raise ValueError(f"the legs do not overlap in time (common span {lo} .. {hi})")
    span = frame.loc[lo:hi]
    complete = span.notna().all(axis=1).to_numpy()
    kept = span[complete]
    grid = pd.DatetimeIndex(span.index if expected is None else expected).as_unit("ns").asi8
    at = pd.DatetimeIndex(kept.index).as_unit("ns").asi8
    gap_before = np.zeros(len(at), dtype=np.int64)
    gap_before[1:] = np.searchsorted(grid, at[1:], "left") - np.searchsorted(grid, at[:-1], "right")
    missing = span[~complete]
    dropped = pd.DataFrame(
        {
            "timestamp": missing.index,
            "missing": [
                ",".join(c for c in span.columns if np.isnan(row[c])) for _, row in missing.iterrows()
            ],
        }
    )
    if len(kept) < 3:
        raise ValueError(f"only {len(kept)} bars have every leg; a pair needs at least 3")
    return AlignedLegs(
        pd.DatetimeIndex(kept.index), kept.astype(np.float64), gap_before, dropped, float(bars_per_year)
    )


def _closes_from_bar_file(path: Path, timeframe: str, calendar: str) -> pd.Series:
    """One leg's closes from a bar file, validated on ``calendar`` (gaps are allowed: the calendar
    counts them)."""
    bars = read_bars_files([path], timeframe)
    validate_bars(bars, timeframe=timeframe, file=str(path), gap_policy="any", calendar=calendar)
    return pd.Series(bars["close"].to_numpy(np.float64), index=pd.DatetimeIndex(bars["timestamp"]))


def read_wide_closes(
    path: str | Path,
    legs: Sequence[str],
    timeframe: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> dict[str, pd.Series]:
    """Closes of ``legs`` from a wide CSV (a date column first, one close column per symbol; the
    layout of Yahoo's multi-symbol exports). Blank cells are missing bars; bad cells and dates off
    the ``timeframe``'s grid (monthly: the first of a month) raise :class:`BarValidationError` naming
    the file, row and rule. Rows dated outside ``start`` .. ``end`` (inclusive) are not read."""
    label = str(path)
    try:
        text = Path(path).read_text()
        raw = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, comment="#", skip_blank_lines=False
        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise BarValidationError(label, None, "unreadable_file", f"{type(exc).__name__}: {exc}") from None
    if raw.shape[1] < 2:
        raise BarValidationError(label, None, "missing_column", "need a date column and symbol columns")
    header_row = 1 + sum(1 for line in text.splitlines() if line.startswith("#"))
    for leg in legs:
        if leg not in raw.columns:
            raise BarValidationError(
                label,
                header_row,
                "missing_column",
                f"no column {leg!r}; columns: {', '.join(raw.columns[1:])}",
            )
    rows = np.arange(len(raw)) + header_row + 1  # 1-based file rows of the data
    when = pd.to_datetime(raw.iloc[:, 0], utc=True, errors="coerce")
    out: dict[str, pd.Series] = {}
    used = np.zeros(len(raw), dtype=bool)
    for leg in legs:
        text = raw[leg].str.strip()
        blank = text == ""
        values = pd.to_numeric(text.where(~blank), errors="coerce")
        bad = (~blank & ~np.isfinite(values)) | (values <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise BarValidationError(
                label,
                int(rows[i]),
                "invalid_price",
                f"{leg} close {raw[leg].iloc[i]!r} is not a positive number",
            )
        used |= ~blank.to_numpy()
        out[leg] = pd.Series(values.to_numpy(np.float64), index=when)
    if start is not None:
        used &= ~(when < start).to_numpy()
    if end is not None:
        used &= ~(when > end).to_numpy()
    bad_time = used & when.isna().to_numpy()
    if bad_time.any():
        i = int(np.flatnonzero(bad_time)[0])
        raise BarValidationError(
            label, int(rows[i]), "invalid_timestamp", f"{raw.iloc[i, 0]!r} is not a date"
        )
    idx = np.flatnonzero(used)
    t = pd.DatetimeIndex(when[used])
    off = np.flatnonzero(_off_grid(t, timeframe))
    if len(off):
        j = int(idx[off[0]])
        raise BarValidationError(
            label, int(rows[j]), "off_grid", f"{raw.iloc[j, 0]} is not on the {timeframe} grid"
        )
    back = np.flatnonzero(np.diff(t.asi8) <= 0)
    if len(back):
        j, k = int(idx[back[0] + 1]), int(idx[back[0]])
        raise BarValidationError(
            label,
            int(rows[j]),
            "timestamps_not_increasing",
            f"{raw.iloc[j, 0]} does not follow {raw.iloc[k, 0]}",
        )
    return {k: v[used] for k, v in out.items()}


def _off_grid(t: pd.DatetimeIndex, timeframe: str) -> np.ndarray:
    """Where bar timestamps are off the timeframe's grid (monthly: not the first of a month, 00:00)."""
    if timeframe == MONTHLY:
        return np.asarray((t.day != 1) | (t.normalize() != t))
    return np.asarray((t - t.normalize()) % timeframe_delta(timeframe) != pd.Timedelta(0))


def read_legs(
    files: Sequence[str | Path],
    legs: Sequence[str],
    timeframe: str,
    calendar: str,
    start: str | None = None,
    end: str | None = None,
) -> AlignedLegs:
    """Read the legs (one bar file per leg, or one wide close file holding every leg) and align them.

    ``start``/``end`` (inclusive dates) cut the common bars before alignment."""
    lo = None if start is None else pd.Timestamp(start, tz="UTC")
    hi = None if end is None else pd.Timestamp(end, tz="UTC")
    if len(files) == 1 and len(legs) >= 2:
        closes = read_wide_closes(files[0], legs, timeframe, lo, hi)
        return align_legs(closes, pair_bars_per_year(timeframe, calendar))
    if len(files) != len(legs):
        raise ValueError(f"give one wide file or one file per leg: {len(files)} files for legs {list(legs)}")
    if timeframe == MONTHLY:
        raise ValueError("monthly legs come from one wide close file")
    closes = {
        leg: _closes_from_bar_file(Path(f), timeframe, calendar).loc[lo:hi]
        for leg, f in zip(legs, files, strict=True)
    }
    return _align_on_calendar(closes, timeframe, calendar)


def legs_from_bars(bars: Mapping[str, pd.DataFrame], timeframe: str, calendar: str) -> AlignedLegs:
    """Legs from validated bar tables (``timestamp``, ``close``; e.g. each leg's ``raw_ohlcv``) on one
    calendar: aligned by the missing-leg rule, gaps counted against the calendar's bars."""
    closes = {
        leg: pd.Series(
            b["close"].to_numpy(np.float64), index=pd.DatetimeIndex(pd.to_datetime(b["timestamp"], utc=True))
        )
        for leg, b in bars.items()
    }
    return _align_on_calendar(closes, timeframe, calendar)


def _align_on_calendar(closes: Mapping[str, pd.Series], timeframe: str, calendar: str) -> AlignedLegs:
    """:func:`align_legs` with the gaps counted against ``calendar``'s bars over the legs' span."""
    if any(s.empty for s in closes.values()):
        raise ValueError(f"a leg has no bars: {[k for k, s in closes.items() if s.empty]}")
    first = min(s.index[0] for s in closes.values())
    last = max(s.index[-1] for s in closes.values())
    expected = pd.DatetimeIndex(expected_closes(calendar, timeframe, first, last, anchor=first))
    return align_legs(closes, pair_bars_per_year(timeframe, calendar), expected)


def pair_key(datasets: list[str]) -> str:
    """The partition key of two datasets (``Y_TF+X_TF``): one timeframe, two different datasets."""
    if len(datasets) != 2 or datasets[0] == datasets[1]:
        raise ValueError(f"a pair is two different datasets, got {datasets}")
    timeframes = {parse_dataset_key(d)[1] for d in datasets}
    if len(timeframes) != 1:
        raise ValueError(f"the legs must share one timeframe, got {sorted(timeframes)}")
    return PAIR_SEP.join(datasets)


def pair_datasets(key: str) -> list[str]:
    """Inverse of :func:`pair_key`."""
    return key.split(PAIR_SEP)


def pair_partition(key: str) -> str:
    """The lake partition of a pair (``pair-Y_TF.X_TF``)."""
    return validate_name("partition", "pair-" + ".".join(pair_datasets(key)))
