"""The canonical OHLCV bar schema shared by every stage.

A bar table is a pandas DataFrame with exactly the columns in ``BAR_COLUMNS``:
``timestamp`` (``datetime64[ns, UTC]``, the bar's *close* time, strictly increasing and unique),
``open``, ``high``, ``low``, ``close``, ``volume`` (float64). Bar ``t`` closes at ``timestamp[t]``;
anything computed "at t" may use rows ``<= t`` only (the causality convention).
"""

from __future__ import annotations

import re

import pandas as pd

BAR_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

#: Supported timeframes and their bar length.
TIMEFRAMES: dict[str, pd.Timedelta] = {
    "1m": pd.Timedelta(minutes=1),
    "3m": pd.Timedelta(minutes=3),
    "5m": pd.Timedelta(minutes=5),
    "15m": pd.Timedelta(minutes=15),
    "30m": pd.Timedelta(minutes=30),
    "1h": pd.Timedelta(hours=1),
    "2h": pd.Timedelta(hours=2),
    "4h": pd.Timedelta(hours=4),
    "6h": pd.Timedelta(hours=6),
    "8h": pd.Timedelta(hours=8),
    "12h": pd.Timedelta(hours=12),
    "1d": pd.Timedelta(days=1),
}

#: Raw bars as stored in the lake: the bar schema plus ``gap_before`` (int64): how many bars the
#: dataset's trading calendar expected just before this one and the data lacks (0: none).
RAW_COLUMNS: tuple[str, ...] = (*BAR_COLUMNS, "gap_before")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """Bar length of ``timeframe``; raises ValueError naming the accepted values."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {sorted(TIMEFRAMES)}") from None


def bars_per_year(timeframe: str, trading_hours_per_year: float = 24 * 365) -> float:
    """Bars in one calendar year for a market open ``trading_hours_per_year`` hours (24/7 by default).

    5m crypto: 105,120; 1h crypto: 8,760. Never a hard-coded 252.
    """
    return trading_hours_per_year * 3600.0 / timeframe_delta(timeframe).total_seconds()


def validate_name(kind: str, value: str) -> str:
    """Reject names that could escape a path or a SQL identifier (``../``, quotes, spaces)."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid {kind} {value!r}: use 1-64 letters, digits, '.', '_' or '-', not starting with "
            "a symbol and without '..'"
        )
    return value


def dataset_key(symbol: str, timeframe: str) -> str:
    """The partition key identifying one dataset, e.g. ``BTCUSDT_1h``."""
    validate_name("symbol", symbol)
    timeframe_delta(timeframe)
    if "_" in symbol:
        raise ValueError(f"invalid symbol {symbol!r}: '_' separates symbol and timeframe in dataset keys")
    return f"{symbol}_{timeframe}"


def parse_dataset_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`dataset_key`."""
    symbol, sep, timeframe = key.rpartition("_")
    if not sep:
        raise ValueError(f"invalid dataset key {key!r}: expected SYMBOL_TIMEFRAME")
    dataset_key(symbol, timeframe)
    return symbol, timeframe
