"""Bar validation: every bad input becomes one error naming the file, the row and the rule it broke.

Row numbers are those of the source file: a frame from :mod:`himari_pipeline.market.readers` carries a
1-based ``source_row`` (the line number in a CSV, header included; the row number in a Parquet file)
and, when several files were merged, ``source_file``. A frame without them is numbered by 1-based
position. The error always names the FIRST offending row (earliest in the frame) over all rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from himari_pipeline.market.bars import BAR_COLUMNS, PRICE_COLUMNS, timeframe_delta

#: Every rule id an error can carry.
RULES: tuple[str, ...] = (
    "missing_column",
    "unparsable_timestamp",
    "mixed_timestamp_unit",
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
    "unknown_format",
    "empty_file",
)


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

    @property
    def missing_bars(self) -> int:
        return sum(g.missing_bars for g in self.gaps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["missing_bars"] = self.missing_bars
        return d


def _rows_and_files(df: pd.DataFrame, file: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    rows = df["source_row"].to_numpy() if "source_row" in df.columns else np.arange(1, len(df) + 1)
    files = df["source_file"].astype(str).to_numpy() if "source_file" in df.columns else None
    return rows, files


def _fmt(x: object) -> str:
    return repr(float(x)) if isinstance(x, float | np.floating) else str(x)


def validate_bars(
    df: pd.DataFrame,
    *,
    timeframe: str,
    file: str | None = None,
    gap_policy: Literal["error", "report"] = "error",
) -> ValidationReport:
    """Check ``df`` against the canonical bar rules; raise :class:`BarValidationError` on the first bad row.

    Rules (ids in ``RULES``): all of ``BAR_COLUMNS`` present; no NaN/NaT; prices > 0; high >= low;
    low <= open, close <= high; volume >= 0; timestamps strictly increasing (``unsorted_timestamp``,
    ``duplicate_timestamp``); spacing a multiple of ``timeframe`` and not below it (``mixed_timeframe``);
    spacing above it is a ``gap``: an error, or listed in the report when ``gap_policy="report"``.
    """
    if gap_policy not in ("error", "report"):
        raise ValueError(f"gap_policy must be 'error' or 'report', not {gap_policy!r}")
    step = timeframe_delta(timeframe)
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise BarValidationError(
            file, None, "missing_column", f"missing column(s) {missing}; found {list(map(str, df.columns))}"
        )
    n = len(df)
    if n == 0:
        return ValidationReport(file, timeframe, 0, None, None)
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
    nan_any = np.zeros(n, dtype=bool)
    for v in values.values():
        nan_any |= np.isnan(v)
    first(
        nan_any,
        "nan_value",
        lambda i: "NaN in " + ", ".join(c for c, v in values.items() if np.isnan(v[i])),
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
    if n > 1:
        t = ts_ns.astype(np.int64)
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
        mixed = valid & (d > 0) & ((d % step_ns != 0) | (d < step_ns))
        first(
            np.r_[False, mixed],
            "mixed_timeframe",
            lambda i: f"spacing {pd.Timedelta(int(d[i - 1]))} is not a multiple of {timeframe}: {pair(i)}",
        )
        gap_mask = valid & (d > step_ns) & (d % step_ns == 0)
        for j in np.flatnonzero(gap_mask):
            i = int(j) + 1
            gaps.append(Gap(file_at(i), int(rows[i]), when(i - 1), when(i), int(d[j] // step_ns) - 1))
        if gap_policy == "error":
            first(
                np.r_[False, gap_mask],
                "gap",
                lambda i: f"{int(d[i - 1] // step_ns) - 1} missing {timeframe} bar(s): {pair(i)}",
            )
    if found:
        i, _, rule, detail = min(found)
        raise BarValidationError(file_at(i), int(rows[i]), rule, detail)
    return ValidationReport(file, timeframe, n, str(ts.iloc[0]), str(ts.iloc[-1]), gaps)
