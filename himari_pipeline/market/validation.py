"""Bar validation: every bad input becomes one error naming the file, the row and the rule it broke.

Row numbers are those of the source file: a frame from :mod:`himari_pipeline.market.readers` carries a
1-based ``source_row`` (the line number in a CSV, header included; the row number in a Parquet file)
and, when several files were merged, ``source_file``. A frame without them is numbered by 1-based
position. The error always names the FIRST offending row (earliest in the frame) over all rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from himari_pipeline.market import calendars
from himari_pipeline.market.bars import BAR_COLUMNS, PRICE_COLUMNS, timeframe_delta

#: Every rule id an error can carry.
RULES: tuple[str, ...] = (
    "missing_column",
    "unparsable_timestamp",
    "mixed_timestamp_unit",
    "timestamp_out_of_range",
    "non_finite_value",
    "absurd_value",
    "duplicate_timestamp",
    "unsorted_timestamp",
    "non_positive_price",
    "high_below_low",
    "close_outside_range",
    "open_outside_range",
    "negative_volume",
    "nan_value",
    "gap",
    "mixed_timeframe",
    "outside_session",
    "off_calendar",
    "unknown_format",
    "empty_file",
    "encoding",
    "duplicate_column",
    "unreadable_file",
)
#: Sane ranges: bar times from 1970 to 2100 (UTC); prices and volumes below these bounds.
MIN_TIMESTAMP = pd.Timestamp("1970-01-01", tz="UTC")
MAX_TIMESTAMP = pd.Timestamp("2100-01-01", tz="UTC")
MAX_PRICE = 1e12
MAX_VOLUME = 1e20


class BarValidationError(ValueError):
    """Bad bar data: ``file``, 1-based ``row`` (None for whole-file rules), ``rule`` and a message."""

    def __init__(self, file: str | None, row: int | None, rule: str, detail: str):
        self.file = None if file is None else str(file)
        self.row = None if row is None else int(row)
        self.rule = rule
        self.detail = detail
        where = self.file or "<frame>"
        if self.row is not None:
            where += f", row {self.row}"
        super().__init__(f"{where}: rule {rule}: {detail}")


@dataclass
class Gap:
    """Missing bars between two consecutive rows (close timestamps ``before`` and ``after``)."""

    file: str | None
    row: int
    before: str
    after: str
    missing_bars: int


@dataclass
class ValidationReport:
    """What validation found on a frame that passed."""

    file: str | None
    timeframe: str
    n_rows: int
    first_timestamp: str | None
    last_timestamp: str | None
    gaps: list[Gap] = field(default_factory=list)
    calendar: str = calendars.DEFAULT_CALENDAR
    gap_limit: int | None = None
    #: Missing expected bars just before each row (0 for none and for the first row).
    gap_before: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    #: 24/5 bars kept although they open in the weekly close (one late print right after the close):
    #: (file, row, close time).
    late_prints: list[tuple[str | None, int, str]] = field(default_factory=list)

    @property
    def longest_gap(self) -> int:
        return max((g.missing_bars for g in self.gaps), default=0)

    @property
    def missing_bars(self) -> int:
        return sum(g.missing_bars for g in self.gaps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("gap_before")
        d["missing_bars"] = self.missing_bars
        d["longest_gap"] = self.longest_gap
        return d


def _rows_and_files(df: pd.DataFrame, file: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    rows = df["source_row"].to_numpy() if "source_row" in df.columns else np.arange(1, len(df) + 1)
    files = df["source_file"].astype(str).to_numpy() if "source_file" in df.columns else None
    return rows, files


def _fmt(x: object) -> str:
    return repr(float(x)) if isinstance(x, float | np.floating) else str(x)


def gap_limit_for(
    gap_policy: str, calendar: str, timeframe: str, max_gap_bars: int | None = None
) -> int | None:
    """Most missing bars one accepted gap may have under ``gap_policy`` (None: any gap is accepted).

    ``error``/``none``: 0; ``report``/``any``: None; ``short``: ``max_gap_bars`` or one trading day.
    """
    if gap_policy in ("error", "none"):
        return 0
    if gap_policy in ("report", "any"):
        return None
    if gap_policy == "short":
        return (
            max_gap_bars if max_gap_bars is not None else calendars.bars_per_session_day(calendar, timeframe)
        )
    raise ValueError(f"gap_policy must be one of short, any, none (or error, report), not {gap_policy!r}")


def validate_bars(
    df: pd.DataFrame,
    *,
    timeframe: str,
    file: str | None = None,
    gap_policy: str = "error",
    calendar: str = calendars.DEFAULT_CALENDAR,
    max_gap_bars: int | None = None,
) -> ValidationReport:
    """Check ``df`` against the canonical bar rules; raise :class:`BarValidationError` on the first bad row.

    Rules (ids in ``RULES``): all of ``BAR_COLUMNS`` present; no NaN/NaT, no inf, nothing absurd
    (prices below ``MAX_PRICE``, volumes below ``MAX_VOLUME``, times in 1970..2100); prices > 0;
    high >= low; low <= open, close <= high; volume >= 0; timestamps strictly increasing
    (``unsorted_timestamp``, ``duplicate_timestamp``). Against the ``calendar``
    (:mod:`~himari_pipeline.market.calendars`): 24/7 and 24/5 bars on the timeframe's grid
    (``mixed_timeframe``), 24/5 bars not opening in the weekly close (``outside_session``), exchange
    bars on the calendar's bars (``off_calendar``). Bars the calendar expects and the data lacks are
    gaps: listed in the report and per row (``gap_before``); a gap longer than the policy's limit
    (:func:`gap_limit_for`) is the error ``gap``.
    """
    limit = gap_limit_for(gap_policy, calendar, timeframe, max_gap_bars)
    calendars.validate_calendar(calendar)
    step = timeframe_delta(timeframe)
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise BarValidationError(
            file, None, "missing_column", f"missing column(s) {missing}; found {list(map(str, df.columns))}"
        )
    n = len(df)
    if n == 0:
        return ValidationReport(file, timeframe, 0, None, None, calendar=calendar, gap_limit=limit)
    rows, files = _rows_and_files(df, file)

    def file_at(i: int) -> str | None:
        return files[i] if files is not None else file

    # (position, rule order, rule, detail) of the first violation of each rule.
    found: list[tuple[int, int, str, str]] = []

    def first(mask: np.ndarray, rule: str, describe) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            i = int(idx[0])
            found.append((i, RULES.index(rule), rule, describe(i)))

    ts = df["timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        ts = pd.to_datetime(ts, utc=True, errors="coerce", format="ISO8601")
    ts_ns = ts.to_numpy(dtype="datetime64[ns]")
    values = {c: df[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close", "volume")}

    nat = np.isnat(ts_ns)
    first(nat, "nan_value", lambda i: "timestamp is missing (NaT)")
    t_all = ts_ns.astype(np.int64)
    first(
        ~nat & ((t_all < MIN_TIMESTAMP.value) | (t_all > MAX_TIMESTAMP.value)),
        "timestamp_out_of_range",
        lambda i: f"bar time {ts.iloc[i]} is outside {MIN_TIMESTAMP.year}..{MAX_TIMESTAMP.year}",
    )
    nan_any = np.zeros(n, dtype=bool)
    inf_any = np.zeros(n, dtype=bool)
    absurd = np.zeros(n, dtype=bool)
    for c, v in values.items():
        nan_any |= np.isnan(v)
        inf_any |= np.isinf(v)
        absurd |= np.isfinite(v) & (np.abs(v) >= (MAX_VOLUME if c == "volume" else MAX_PRICE))
    first(
        nan_any,
        "nan_value",
        lambda i: "NaN in " + ", ".join(c for c, v in values.items() if np.isnan(v[i])),
    )
    first(
        inf_any,
        "non_finite_value",
        lambda i: ", ".join(f"{c} {v[i]}" for c, v in values.items() if np.isinf(v[i])) + " is not finite",
    )
    first(
        absurd,
        "absurd_value",
        lambda i: ", ".join(
            f"{c} {_fmt(v[i])} >= {(MAX_VOLUME if c == 'volume' else MAX_PRICE):g}"
            for c, v in values.items()
            if np.isfinite(v[i]) and abs(v[i]) >= (MAX_VOLUME if c == "volume" else MAX_PRICE)
        ),
    )
    o, h, lo, c_, vol = (values[k] for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        nonpos = np.zeros(n, dtype=bool)
        for c in PRICE_COLUMNS:
            nonpos |= values[c] <= 0
        first(
            nonpos,
            "non_positive_price",
            lambda i: (
                ", ".join(f"{c} {_fmt(values[c][i])}" for c in PRICE_COLUMNS if values[c][i] <= 0) + " <= 0"
            ),
        )
        first(h < lo, "high_below_low", lambda i: f"high {_fmt(h[i])} < low {_fmt(lo[i])}")
        ok_range = h >= lo
        first(
            ok_range & ((c_ > h) | (c_ < lo)),
            "close_outside_range",
            lambda i: f"close {_fmt(c_[i])} outside [low {_fmt(lo[i])}, high {_fmt(h[i])}]",
        )
        first(
            ok_range & ((o > h) | (o < lo)),
            "open_outside_range",
            lambda i: f"open {_fmt(o[i])} outside [low {_fmt(lo[i])}, high {_fmt(h[i])}]",
        )
        first(vol < 0, "negative_volume", lambda i: f"volume {_fmt(vol[i])} < 0")

    gaps: list[Gap] = []
    gap_before = np.zeros(n, dtype=np.int64)
    late_prints: list[tuple[str | None, int, str]] = []
    if n > 1:
        t = t_all
        valid = ~(nat[1:] | nat[:-1])
        d = np.diff(t)
        step_ns = int(step.value)

        def when(i: int) -> str:
            return str(ts.iloc[i])

        def pair(i: int) -> str:
            prev = f"row {rows[i - 1]}"
            if files is not None and files[i - 1] != files[i]:
                prev = f"{files[i - 1]}, {prev}"
            return f"{prev} at {when(i - 1)}, then {when(i)}"

        first(np.r_[False, valid & (d < 0)], "unsorted_timestamp", lambda i: f"goes back in time: {pair(i)}")
        first(np.r_[False, valid & (d == 0)], "duplicate_timestamp", lambda i: f"same time as {pair(i)}")
        ordered = not found or not any(
            r in ("unsorted_timestamp", "duplicate_timestamp") for _, _, r, _ in found
        )
        in_range = ~nat & (t_all >= MIN_TIMESTAMP.value) & (t_all <= MAX_TIMESTAMP.value)
        if calendars.is_exchange(calendar):
            on_grid = np.ones(n, dtype=bool)
        else:
            mixed = valid & (d > 0) & ((d % step_ns != 0) | (d < step_ns))
            first(
                np.r_[False, mixed],
                "mixed_timeframe",
                lambda i: (
                    f"spacing {pd.Timedelta(int(d[i - 1]))} is not a multiple of {timeframe}: {pair(i)}"
                ),
            )
            on_grid = ~np.r_[False, mixed]
        if ordered and in_range.all() and on_grid.all():
            pos, late = _calendar_positions(calendar, timeframe, ts, first)
            if pos is not None:
                gap_before[1:] = np.maximum(np.diff(pos) - 1, 0)
                late_prints = [(file_at(i), int(rows[i]), when(i)) for i in late]
        for j in np.flatnonzero(gap_before):
            i = int(j)
            gaps.append(Gap(file_at(i), int(rows[i]), when(i - 1), when(i), int(gap_before[i])))
        if limit is not None:
            rule_text = "no gap is accepted" if limit == 0 else f"the gap policy accepts up to {limit}"
            first(
                gap_before > limit,
                "gap",
                lambda i: (
                    f"{int(gap_before[i])} missing {timeframe} bar(s) of calendar {calendar} "
                    f"({rule_text}): {pair(i)}"
                ),
            )
    if found:
        i, _, rule, detail = min(found)
        raise BarValidationError(file_at(i), int(rows[i]), rule, detail)
    return ValidationReport(
        file, timeframe, n, str(ts.iloc[0]), str(ts.iloc[-1]), gaps, calendar, limit, gap_before, late_prints
    )


def _calendar_positions(
    calendar: str, timeframe: str, ts: pd.Series, first
) -> tuple[np.ndarray | None, list]:
    """Each bar's position in the calendar's expected bars, and the 24/5 late prints kept.

    Flags bars the calendar does not have. Under 24/5 one bar right after the Friday close (the next bar
    on the grid after a session bar: a late print, e.g. a one-tick bar at 17:00 New York time) is kept
    and takes the position of the bar before it; any other bar in the weekly close is an error.
    """
    index = pd.DatetimeIndex(ts)
    step = timeframe_delta(timeframe)
    expected = calendars.expected_closes(calendar, timeframe, index[0], index[-1], anchor=index[0])
    pos = expected.searchsorted(index)
    hit = pos < len(expected)
    hit[hit] = expected[pos[hit]] == index[hit]
    late: list[int] = []
    if calendar == calendars.CALENDAR_24_5:
        after = np.r_[False, hit[:-1] & (np.diff(index.asi8) == step.value)]
        late = [int(i) for i in np.flatnonzero(~hit & after)]
        pos[late] = pos[np.array(late, dtype=np.int64) - 1]
        hit[late] = True
    if hit.all():
        return pos, late
    if calendar == calendars.CALENDAR_24_5:
        first(
            ~hit,
            "outside_session",
            lambda i: (
                f"the bar opening {index[i] - timeframe_delta(timeframe)} is in the 24/5 weekly close "
                "(Friday 17:00 to Sunday 17:00 New York time); use --calendar 24/7 for a market open then"
            ),
        )
    else:
        first(
            ~hit,
            "off_calendar",
            lambda i: (
                f"no {timeframe} bar of calendar {calendar} closes at {index[i]} (bar open "
                f"{index[i] - timeframe_delta(timeframe)}): not a session, or not aligned to the session open"
            ),
        )
    return None, []
