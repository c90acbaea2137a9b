"""Trades (ticks) to time bars on a dataset's calendar, causally and incrementally.

A tick file (CSV or Parquet) has the columns ``timestamp, price, size`` (case-insensitive, extra
columns ignored); ``timestamp`` is the trade time, ISO-8601 (naive means UTC) or epoch seconds to
nanoseconds (unit from the magnitude), as in bar files. Rules, each named with file and row:
``missing_column``, ``empty_file``, ``unparsable_timestamp``, ``nan_value``, ``non_positive_price``,
``negative_size``, ``unsorted_timestamp`` (trades must not go back in time, within a file, across the
files of one call, or before the last trade already ingested; equal times are allowed).

Bars: the calendar's bar intervals ``[open, open + timeframe)`` (24/7 and 24/5: the UTC epoch grid;
an exchange: its sessions, from ``exchange_calendars``). A trade belongs to the interval holding its
time; trades outside every interval (pre- and post-market on an exchange, the FX weekend) are
dropped and counted. A bar is labelled by its close (``open + timeframe``), as the lake stores bars:
``open``/``high``/``low``/``close`` are the first, highest, lowest and last price, ``volume`` the
summed size, ``trades`` the count and ``vwap`` the size-weighted price (the price mean when every size
is 0). An interval without trades makes no bar (the dataset's gap policy judges the hole).

A bar is final once a trade at or after its close has been seen (or ``as_of`` has passed its close):
the interval of the latest trade stays pending and its trades are carried to the next call, so
appending trades later never changes a bar already written. Aggregating a stream in pieces gives the
bars of aggregating it whole (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.market import calendars
from himari_pipeline.market.bars import timeframe_delta
from himari_pipeline.market.readers import (
    _numbers,
    _read_csv_text,
    _reject_first,
    _timestamps,
    detect_format,
)
from himari_pipeline.market.validation import BarValidationError

__all__ = ["TICK_COLUMNS", "TickBars", "aggregate_ticks", "read_ticks", "read_ticks_files"]

TICK_COLUMNS: tuple[str, ...] = ("timestamp", "price", "size")
BAR_EXTRA_COLUMNS: tuple[str, ...] = ("trades", "vwap")


def _frame(label: str, raw: pd.DataFrame, first_row: int) -> pd.DataFrame:
    raw = raw.rename(columns=lambda c: str(c).strip().lower())
    missing = [c for c in TICK_COLUMNS if c not in raw.columns]
    if missing:
        raise BarValidationError(
            label, None, "missing_column", f"missing column(s) {missing}; found {list(raw.columns)} "
            "(expected timestamp, price, size)"
        )  # fmt: skip
    if raw.empty:
        raise BarValidationError(label, None, "empty_file", "the file holds no trades")
    rows = np.arange(first_row, first_row + len(raw))
    ts = _timestamps(raw["timestamp"], label, rows)
    price = _numbers(raw["price"], "price", label, rows)
    size = _numbers(raw["size"], "size", label, rows)
    _reject_first(~np.isfinite(price), label, rows, "nan_value", lambda i: f"price is {price[i]}")
    _reject_first(~np.isfinite(size), label, rows, "nan_value", lambda i: f"size is {size[i]}")
    _reject_first(price <= 0, label, rows, "non_positive_price", lambda i: f"price {price[i]} <= 0")
    _reject_first(size < 0, label, rows, "negative_size", lambda i: f"size {size[i]} < 0")
    back = np.r_[False, ts[1:] < ts[:-1]]
    _reject_first(
        back,
        label,
        rows,
        "unsorted_timestamp",
        lambda i: (
            f"trade at {pd.Timestamp(ts[i], tz='UTC')} is before the previous row's "
            f"{pd.Timestamp(ts[i - 1], tz='UTC')}"
        ),
    )
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(ts, unit="ns", utc=True),
            "price": price,
            "size": size,
            "source_file": label,
            "source_row": rows,
        }  # fmt: skip
    )


def read_ticks(path: str | Path) -> pd.DataFrame:
    """One validated tick file: ``timestamp`` (UTC), ``price``, ``size``, ``source_file``, ``source_row``."""
    label = str(path)
    path = Path(path)
    try:
        if detect_format(path) == "parquet":
            import pyarrow.parquet as pq

            return _frame(label, pq.read_table(path).to_pandas(), first_row=1)
        return _frame(label, _read_csv_text(path, label, None, skip_header=False), first_row=2)
    except BarValidationError:
        raise
    except Exception as exc:  # any other reader failure still names the file, never a traceback
        raise BarValidationError(label, None, "unreadable_file", f"{type(exc).__name__}: {exc}") from None


def read_ticks_files(paths: list[Path], after: pd.Timestamp | None = None) -> pd.DataFrame:
    """Several tick files in the order given, as one stream; none may go back in time (nor before
    ``after``, the last trade already ingested)."""
    frames, last = [], after
    for p in paths:
        df = read_ticks(p)
        first = df["timestamp"].iloc[0]
        if last is not None and first < last:
            raise BarValidationError(
                str(p), int(df["source_row"].iloc[0]), "unsorted_timestamp",
                f"first trade at {first} is before the last trade already read ({last}): give files in "
                "time order, and only trades after those already ingested",
            )  # fmt: skip
        last = df["timestamp"].iloc[-1]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@dataclass
class TickBars:
    """Final bars (``timestamp`` = close, OHLCV, ``trades``, ``vwap``), the pending trades of the
    interval still open, and how many trades fell outside the calendar's intervals."""

    bars: pd.DataFrame
    pending: pd.DataFrame
    dropped: int


def _interval_opens(calendar: str, timeframe: str, first: pd.Timestamp, last: pd.Timestamp) -> np.ndarray:
    """Open times (int64 ns, ascending) of the calendar's bar intervals that may hold [first, last]."""
    step = timeframe_delta(timeframe)
    epoch = pd.Timestamp(0, tz="UTC")  # the grid of 24/7 and 24/5 bars (an exchange has its sessions)
    return (calendars.expected_closes(calendar, timeframe, first, last + step, anchor=epoch) - step).asi8


def aggregate_ticks(
    ticks: pd.DataFrame, timeframe: str, calendar: str = "24/7", as_of: pd.Timestamp | None = None
) -> TickBars:
    """Bars of ``ticks`` (time-ordered) on ``calendar``; see the module docstring for the rules."""
    step = timeframe_delta(timeframe)
    empty = pd.DataFrame(columns=["timestamp", "open", "high", "low", "close", "volume", *BAR_EXTRA_COLUMNS])
    if ticks.empty:
        return TickBars(empty, ticks.iloc[:0], 0)
    ts = ticks["timestamp"]
    opens = _interval_opens(calendar, timeframe, ts.iloc[0], ts.iloc[-1])
    if len(opens) == 0:  # every trade outside the calendar's intervals (a weekend, a holiday)
        return TickBars(empty, ticks.iloc[:0], len(ticks))
    t = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    k = np.searchsorted(opens, t, side="right") - 1
    close = opens[np.maximum(k, 0)] + step.value
    inside = (k >= 0) & (t < close)
    last_seen = t[-1] if as_of is None else max(t[-1], pd.Timestamp(as_of).value)
    final = inside & (close <= last_seen)
    pending = ticks[inside & ~final]
    done = ticks[final]
    if done.empty:
        return TickBars(empty, pending, int((~inside).sum()))
    done = done.assign(_k=k[final], _pv=done["price"] * done["size"])
    g = done.groupby("_k", sort=True)
    notional = g["_pv"].sum()
    volume = g["size"].sum()
    vwap = np.where(volume > 0, notional / volume.where(volume > 0, 1.0), g["price"].mean())
    bars = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(opens[volume.index.to_numpy()] + step.value, unit="ns", utc=True),
            "open": g["price"].first().to_numpy(),
            "high": g["price"].max().to_numpy(),
            "low": g["price"].min().to_numpy(),
            "close": g["price"].last().to_numpy(),
            "volume": volume.to_numpy(dtype=float),
            "trades": g["price"].size().to_numpy(dtype=np.int64),
            "vwap": np.asarray(vwap, dtype=float),
        }
    )
    return TickBars(bars, pending, int((~inside).sum()))
