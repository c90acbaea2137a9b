"""Trading calendars: which bars a market is expected to have, and how many there are in a year.

Three kinds of calendar (names are full-matched, case-sensitive):

* ``24/7`` (the default; crypto): every bar on the timeframe's grid.
* ``24/5`` (FX): every bar that *opens* inside the weekly session. The market closes on Friday at
  17:00 New York time and reopens on Sunday at 17:00 New York time: 22:00 UTC in winter, 21:00 UTC
  while US daylight saving time is in effect (how FX data is published, e.g. backtesting.py's EURUSD).
  Daily bars labelled by their UTC date are therefore Monday..Friday.
* An exchange calendar of the ``exchange_calendars`` package (``XNYS``, ``XLON``, ``CMES``, ...):
  holidays and early closes come from that library. Daily bars are one per session (a bar's open time
  is the session's date, 00:00 UTC); intraday bars are the calendar's trading index: they start at
  the session open and the last one of a session is cut at the close (an early close included).

Bars are identified here by their *close* time (the lake's convention): open time + timeframe.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pandas as pd

from himari_pipeline.market.bars import timeframe_delta

CALENDAR_24_7 = "24/7"
CALENDAR_24_5 = "24/5"
DEFAULT_CALENDAR = CALENDAR_24_7
#: The 24/5 weekly close, in New York wall-clock minutes from Monday 00:00: Friday 17:00 to Sunday 17:00.
FX_TIMEZONE = "America/New_York"
FX_CLOSE_START = (4 * 24 + 17) * 60
FX_CLOSE_END = (6 * 24 + 17) * 60
#: Years over which an exchange calendar's bars are counted to get bars per year.
REFERENCE_YEARS = (2015, 2024)
_EXCHANGE_RE = re.compile(r"[A-Z][A-Z0-9]{1,9}")


class CalendarError(ValueError):
    """An unknown calendar name, or a timeframe the calendar cannot express."""


@functools.cache
def exchange_names() -> tuple[str, ...]:
    """Exchange calendars available from ``exchange_calendars`` (its own 24/5 and 24/7 excluded)."""
    import exchange_calendars as xc

    return tuple(sorted(n for n in xc.get_calendar_names(include_aliases=True) if _EXCHANGE_RE.fullmatch(n)))


def validate_calendar(name: str) -> str:
    """``name`` if it is a known calendar; otherwise :class:`CalendarError` saying what is accepted."""
    if isinstance(name, str) and (name in (CALENDAR_24_7, CALENDAR_24_5) or name in exchange_names()):
        return name
    examples = ", ".join(n for n in ("XNYS", "XNAS", "XLON", "CMES", "XTKS") if n in exchange_names())
    raise CalendarError(
        f"unknown calendar {name!r}: use 24/7 (crypto), 24/5 (FX: closed Friday 17:00 to Sunday 17:00 New "
        "York time) "
        f"or an exchange calendar of the exchange_calendars package ({examples}, ...)"
    )


def is_exchange(name: str) -> bool:
    return name not in (CALENDAR_24_7, CALENDAR_24_5)


@functools.cache
def _exchange(name: str, start_year: int, end_year: int):
    import exchange_calendars as xc

    return xc.get_calendar(name, start=f"{start_year}-01-01", end=f"{end_year}-12-31")


def _exchange_for(name: str, start: pd.Timestamp, end: pd.Timestamp):
    """The exchange calendar covering ``start..end`` (cached per span of whole decades)."""
    lo = min(start.year, REFERENCE_YEARS[0]) // 10 * 10
    hi = max(end.year, REFERENCE_YEARS[1]) // 10 * 10 + 9
    return _exchange(name, lo, hi)


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def fx_open(opens: pd.DatetimeIndex) -> np.ndarray:
    """True where a bar opening at ``opens`` (UTC) is inside the 24/5 session."""
    local = pd.DatetimeIndex(opens).tz_convert(FX_TIMEZONE)
    minute = (local.dayofweek * 24 + local.hour) * 60 + local.minute
    return ~np.asarray((minute >= FX_CLOSE_START) & (minute < FX_CLOSE_END))


def expected_closes(
    calendar: str, timeframe: str, start, end, anchor: pd.Timestamp | None = None
) -> pd.DatetimeIndex:
    """Close times (UTC) of every bar ``calendar`` expects with ``start <= close <= end``.

    ``anchor`` is one close time on the grid (24/7 and 24/5 grids are anchored on the data's first bar,
    so files whose bars open at :30 work); defaults to ``start``.
    """
    validate_calendar(calendar)
    step = timeframe_delta(timeframe)
    start, end = _utc(start), _utc(end)
    if end < start:
        return pd.DatetimeIndex([], tz="UTC")
    if not is_exchange(calendar):
        anchor = _utc(anchor if anchor is not None else start)
        first = anchor + np.ceil((start - anchor) / step) * step
        closes = pd.date_range(first, end, freq=step, tz="UTC")
        if calendar == CALENDAR_24_5:
            closes = closes[fx_open(closes - step)]
        return closes
    cal = _exchange_for(calendar, start, end)
    if step >= pd.Timedelta(days=1):
        if step != pd.Timedelta(days=1):
            raise CalendarError(
                f"calendar {calendar}: timeframe {timeframe} is not supported (1d or intraday)"
            )
        lo = max(start - step, _utc(cal.first_session)).tz_localize(None).normalize()
        hi = min(end - step, _utc(cal.last_session)).tz_localize(None).normalize()
        sessions = cal.sessions_in_range(lo, hi) if lo <= hi else pd.DatetimeIndex([])
        closes = pd.DatetimeIndex(sessions).tz_localize("UTC") + step
    else:
        lo = max(start - step, _utc(cal.first_minute)).floor("D")
        hi = min(end, _utc(cal.last_minute)).ceil("D")
        index = cal.trading_index(lo, hi, step, intervals=True, force=True, parse=False)
        closes = pd.DatetimeIndex(index.left) + step
    return closes[(closes >= start) & (closes <= end)]


@functools.cache
def bars_per_year(calendar: str, timeframe: str) -> float:
    """Bars in one year of ``calendar`` at ``timeframe``.

    24/7: 365 days of bars (1h: 8,760; 30m: 17,520). 24/5 and exchange calendars: the calendar's bars
    counted over ``REFERENCE_YEARS`` (inclusive), per year (24/5 1h: about 6,260, holidays are not closures;
    XNYS 1d: about 252; XNYS 1h: about 1,755).
    """
    validate_calendar(calendar)
    step = timeframe_delta(timeframe)
    if calendar == CALENDAR_24_7:
        return pd.Timedelta(days=365) / step
    first, last = REFERENCE_YEARS
    closes = expected_closes(
        calendar,
        timeframe,
        pd.Timestamp(f"{first}-01-01", tz="UTC"),
        pd.Timestamp(f"{last + 1}-01-01", tz="UTC"),
    )
    return round(len(closes) / (last - first + 1), 2)


def bars_in_year(calendar: str, timeframe: str, year: int) -> int:
    """Bars ``calendar`` expects in calendar year ``year`` (24/7 1h: 8,760, or 8,784 in a leap year)."""
    step = timeframe_delta(timeframe)
    start = pd.Timestamp(f"{year}-01-01", tz="UTC")
    end = pd.Timestamp(f"{year + 1}-01-01", tz="UTC")
    return len(expected_closes(calendar, timeframe, start + step, end, anchor=start + step))


def bars_per_session_day(calendar: str, timeframe: str) -> int:
    """Bars in one trading day (24 hours for 24/7 and 24/5, one session for an exchange), at least 1."""
    if not is_exchange(calendar):
        return max(1, round(pd.Timedelta(days=1) / timeframe_delta(timeframe)))
    if timeframe_delta(timeframe) >= pd.Timedelta(days=1):
        return 1
    per_year_days = bars_per_year(calendar, "1d")
    return max(1, round(bars_per_year(calendar, timeframe) / per_year_days))


def describe(calendar: str) -> str:
    """One line saying what the calendar's sessions are."""
    if calendar == CALENDAR_24_7:
        return "24/7: every bar, every day"
    if calendar == CALENDAR_24_5:
        return "24/5: open Sunday 17:00 to Friday 17:00 New York time (22:00 UTC, 21:00 UTC in US summer)"
    return f"{calendar}: sessions, holidays and early closes of exchange_calendars"
