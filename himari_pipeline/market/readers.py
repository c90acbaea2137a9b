"""Read bar files into the canonical schema: Binance kline CSV/ZIP, generic CSV and Parquet.

Kept whole (over 400 lines): the readers share one row-numbering, timestamp-parsing and rejection
scheme, so every error names the file, the row and the rule the same way.

Every reader returns ``BAR_COLUMNS`` plus ``source_row`` (int64, 1-based): the line number in a CSV
(header line included, so the first data line of a file with a header is row 2) or the row number in
a Parquet file. :func:`read_bars_files` adds ``source_file``. Use :func:`canonical` to drop both.
``timestamp`` is the bar's CLOSE time in UTC (a decision at bar t sees bar t complete): open time +
timeframe when the source labels bars by their open time. Parse problems raise
:class:`BarValidationError` naming the file, row and rule;
the OHLC/spacing rules are checked by :func:`~himari_pipeline.market.validation.validate_bars`
(:func:`load_bars` does both).

Binance bulk-download klines (https://data.binance.vision): 12 columns, no header (some newer futures
files have an ``open_time,...`` header: both accepted); ``open_time`` in milliseconds, or microseconds
for spot data from 2025 on, detected per file by magnitude (``>= 1e15`` is microseconds; a file mixing
both is rejected with rule ``mixed_timestamp_unit``). Binance bars are always labelled by open time, so
``timestamp_is`` applies to generic files only. ``close_time - open_time`` must match the timeframe.

Generic files: columns ``timestamp, open, high, low, close, volume`` (case-insensitive, extra columns
ignored); ``timestamp`` as an ISO-8601 string (naive means UTC, offsets are converted) or epoch
seconds/milliseconds/microseconds/nanoseconds, the unit detected from the magnitude.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from himari_pipeline.market.bars import BAR_COLUMNS, timeframe_delta
from himari_pipeline.market.validation import BarValidationError, ValidationReport, validate_bars

FORMATS: tuple[str, ...] = ("binance_csv", "binance_zip", "generic_csv", "generic_zip", "parquet")
BINANCE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
_VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INT_RE = re.compile(r"^[+-]?\d+$")
#: Epoch unit by magnitude: (upper bound of |value|, unit name, nanoseconds per unit).
_EPOCH_UNITS = ((1e11, "seconds", 10**9), (1e15, "milliseconds", 10**6), (1e18, "microseconds", 10**3))
#: Epoch seconds a bar time may have: 1970-01-01 .. 2100-01-01 (checked before converting to int64 ns).
_EPOCH_RANGE_S = (0.0, 4102444800.0)

TimestampIs = Literal["open", "close"]


# --- format detection ----------------------------------------------------------------------------------


def _first_line(data: bytes) -> str:
    text = data[:65536].decode("utf-8-sig", errors="replace")
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _csv_kind(first_line: str, label: str) -> Literal["binance", "generic"]:
    if not first_line:
        raise BarValidationError(label, None, "empty_file", "the file holds no data")
    fields = [f.strip().strip('"').lower() for f in first_line.split(",")]
    if _NUMBER_RE.match(fields[0]):
        if len(fields) == len(BINANCE_COLUMNS):
            return "binance"
        raise BarValidationError(
            label,
            None,
            "unknown_format",
            f"headerless CSV with {len(fields)} columns: expected the 12-column Binance kline format, "
            "or a header naming timestamp, open, high, low, close, volume",
        )
    return "binance" if fields[0] == "open_time" else "generic"


def _zip_member(path: Path) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    zf = zipfile.ZipFile(path)
    members = [m for m in zf.infolist() if not m.is_dir() and m.filename.lower().endswith(".csv")]
    members = [m for m in members if not m.filename.startswith("__MACOSX/")]
    if len(members) != 1:
        names = [m.filename for m in zf.infolist()]
        zf.close()
        raise BarValidationError(
            str(path), None, "unknown_format", f"a zip must hold exactly one .csv file; found {names}"
        )
    return zf, members[0]


def detect_format(path: str | Path) -> str:
    """One of ``FORMATS``, from the file's magic bytes and first line (not only its extension)."""
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise BarValidationError(label, None, "unknown_format", "no such file")
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(path):
        try:
            zf, member = _zip_member(path)
        except zipfile.BadZipFile as exc:
            raise BarValidationError(label, None, "unknown_format", f"unreadable zip: {exc}") from None
        with zf, zf.open(member) as fh:
            kind = _csv_kind(_first_line(fh.read(65536)), label)
        return f"{kind}_zip"
    if b"\x00" in head:
        raise BarValidationError(label, None, "unknown_format", "binary file that is neither Parquet nor zip")
    return f"{_csv_kind(_first_line(head), label)}_csv"


# --- parsing helpers -----------------------------------------------------------------------------------


def _is_blank(row: pd.Series) -> bool:
    return all(pd.isna(v) or str(v).strip() == "" for v in row)


def _read_csv_text(source, label: str, names: list[str] | None, skip_header: bool) -> pd.DataFrame:
    """One row per line (blank lines kept so row numbers stay exact, trailing blank lines dropped).

    Numeric columns come back numeric; a column with an empty or non-numeric cell comes back as strings
    (``keep_default_na=False``), so the row-level checks can quote the bad cell.
    """
    kwargs = {
        "header": None if names is not None else 0,
        "names": names,
        "skiprows": 1 if (skip_header and names is not None) else 0,
        "keep_default_na": False,
        "skip_blank_lines": False,
        "encoding": "utf-8-sig",
    }
    try:
        raw = pd.read_csv(source, **kwargs)
        trailing = 0
        while trailing < len(raw) and _is_blank(raw.iloc[len(raw) - 1 - trailing]):
            trailing += 1
        if trailing:
            if hasattr(source, "seek"):
                source.seek(0)
            raw = pd.read_csv(source, nrows=len(raw) - trailing, **kwargs)
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        row = int(m.group(1)) if m else None
        raise BarValidationError(label, row, "unknown_format", f"malformed CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise BarValidationError(label, None, "empty_file", "the file holds no data") from None
    except UnicodeDecodeError as exc:
        raise BarValidationError(
            label,
            None,
            "encoding",
            f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
        ) from None
    return raw


def _reject_first(
    bad: np.ndarray, label: str, rows: np.ndarray, rule: str, message: Callable[[int], str]
) -> None:
    """Raise :class:`BarValidationError` (rule ``rule``) at the first position where ``bad`` is True."""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BarValidationError(label, int(rows[i]), rule, message(i))


def _numbers(raw: pd.Series, column: str, label: str, rows: np.ndarray) -> np.ndarray:
    """Float values of a column; the first missing or non-numeric cell raises ``nan_value``."""
    if raw.dtype.kind in "fiu":
        values = raw.to_numpy(dtype=float)
        bad = np.isnan(values)
    else:
        text = raw.fillna("").astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(values)

    def message(i: int) -> str:
        cell = raw.iloc[i]
        what = "is empty" if cell is None or str(cell).strip() in ("", "nan", "None") else "is not a number"
        return f"{column} {what}: {cell!r}"

    _reject_first(bad, label, rows, "nan_value", message)
    return values


def _epoch_unit(magnitude: np.ndarray) -> np.ndarray:
    """Index into ``_EPOCH_UNITS`` (3 = nanoseconds) for each value."""
    return np.searchsorted(np.array([u[0] for u in _EPOCH_UNITS]), magnitude, side="right")


def _epoch_to_ns(text: pd.Series, label: str, rows: np.ndarray, column: str) -> tuple[np.ndarray, int]:
    """Epoch numbers (strings or numbers) to int64 nanoseconds, one unit per file; also ns per unit."""
    if text.dtype.kind in "iu":
        ints: np.ndarray | None = text.to_numpy(dtype=np.int64)
        floats = ints.astype(float)
    else:
        s = text.astype(str).str.strip()
        if s.str.match(_INT_RE).all():
            ints = s.astype(np.int64).to_numpy()
            floats = ints.astype(float)
        else:
            ints = None
            floats = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    unit = _epoch_unit(np.abs(floats))
    names = [u[1] for u in _EPOCH_UNITS] + ["nanoseconds"]
    _reject_first(
        unit != unit[0],
        label,
        rows,
        "mixed_timestamp_unit",
        lambda i: (
            f"{column} {text.iloc[i]} is in {names[unit[i]]} but row {rows[0]} ({text.iloc[0]}) is in "
            f"{names[unit[0]]}: one file must use one unit"
        ),
    )
    per = (*(u[2] for u in _EPOCH_UNITS), 1)[int(unit[0])]
    seconds = floats * (per / 1e9)
    out = ~((seconds >= _EPOCH_RANGE_S[0]) & (seconds <= _EPOCH_RANGE_S[1]))
    _reject_first(
        out,
        label,
        rows,
        "timestamp_out_of_range",
        lambda i: f"{column} {text.iloc[i]} (epoch {names[unit[i]]}) is outside 1970..2100",
    )
    if ints is not None:
        return ints * per, per
    return np.round(floats * per).astype(np.int64), per


def _timestamps(raw: pd.Series, label: str, rows: np.ndarray, column: str = "timestamp") -> np.ndarray:
    """Generic timestamp column -> int64 UTC nanoseconds; ISO strings or epoch numbers."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        ts = raw.dt.tz_convert("UTC")
    elif raw.dtype.kind == "M":
        ts = raw.dt.tz_localize("UTC")
    elif raw.dtype.kind in "iuf":
        values = raw.to_numpy(dtype=float)
        _reject_first(np.isnan(values), label, rows, "unparsable_timestamp", lambda i: f"{column} is empty")
        return _epoch_to_ns(raw, label, rows, column)[0]
    else:
        text = raw.fillna("").astype(str).str.strip()
        numeric = text.str.match(_NUMBER_RE)
        if numeric.all():
            return _epoch_to_ns(text, label, rows, column)[0]
        ts = pd.to_datetime(text.where(~numeric, ""), utc=True, errors="coerce", format="ISO8601")
    ns = ts.to_numpy(dtype="datetime64[ns]")
    _reject_first(
        np.isnat(ns),
        label,
        rows,
        "unparsable_timestamp",
        lambda i: f"{column} {raw.iloc[i]!r} is neither an ISO-8601 time nor an epoch number",
    )
    return ns.astype(np.int64)


def _frame(ts_ns: np.ndarray, values: dict[str, np.ndarray], rows: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"timestamp": pd.to_datetime(ts_ns, unit="ns", utc=True)})
    for c in _VALUE_COLUMNS:
        df[c] = values[c].astype(np.float64)
    df["source_row"] = rows.astype(np.int64)
    return df


# --- readers --------------------------------------------------------------------------------------------


def _read_binance(source, label: str, timeframe: str, has_header: bool) -> pd.DataFrame:
    raw = _read_csv_text(source, label, list(BINANCE_COLUMNS), skip_header=has_header)
    rows = np.arange(1, len(raw) + 1) + (1 if has_header else 0)
    if raw.empty:
        raise BarValidationError(label, None, "empty_file", "the file holds no bars")
    for col in ("open_time", "close_time"):
        if raw[col].dtype.kind in "iu":
            continue
        text = raw[col].astype(str).str.strip()
        _reject_first(
            ~text.str.match(_INT_RE).to_numpy(),
            label,
            rows,
            "unparsable_timestamp",
            lambda i, col=col: f"{col} {raw[col].iloc[i]!r} is not an integer",
        )
    open_ns, per = _epoch_to_ns(raw["open_time"], label, rows, "open_time")
    if per not in (10**6, 10**3):
        raise BarValidationError(
            label,
            int(rows[0]),
            "unparsable_timestamp",
            f"open_time {raw['open_time'].iloc[0]} is neither epoch milliseconds nor microseconds",
        )
    close_ns = raw["close_time"].astype(np.int64).to_numpy() * per
    step = int(timeframe_delta(timeframe).value)
    span = close_ns - open_ns + per
    _reject_first(
        span != step,
        label,
        rows,
        "mixed_timeframe",
        lambda i: (
            f"close_time - open_time spans {pd.Timedelta(int(span[i]))}, but the timeframe is {timeframe}"
        ),
    )
    values = {c: _numbers(raw[c], c, label, rows) for c in _VALUE_COLUMNS}
    return _frame(open_ns + step, values, rows)


def _read_generic(
    raw: pd.DataFrame,
    label: str,
    timeframe: str,
    timestamp_is: str,
    first_row: int,
    header: list[str] | None = None,
):
    names = header if header is not None else [str(c) for c in raw.columns]
    lowered = [str(c).strip().lower() for c in names]
    dups = sorted({c for c in lowered if lowered.count(c) > 1 and c in BAR_COLUMNS})
    if dups:
        raise BarValidationError(
            label,
            1 if header is not None else None,
            "duplicate_column",
            f"column(s) {dups} appear more than once (names compared case-insensitively): {names}",
        )
    raw = raw.rename(columns=lambda c: str(c).strip().lower())
    missing = [c for c in BAR_COLUMNS if c not in raw.columns]
    if missing:
        raise BarValidationError(
            label,
            None,
            "missing_column",
            f"missing column(s) {missing}; found {list(raw.columns)} "
            "(expected timestamp, open, high, low, close, volume)",
        )
    if raw.empty:
        raise BarValidationError(label, None, "empty_file", "the file holds no bars")
    rows = np.arange(first_row, first_row + len(raw))
    ts = _timestamps(raw["timestamp"], label, rows)
    if timestamp_is == "open":
        ts = ts + int(timeframe_delta(timeframe).value)
    values = {c: _numbers(raw[c], c, label, rows) for c in _VALUE_COLUMNS}
    return _frame(ts, values, rows)


def read_bars_file(path: str | Path, timeframe: str, *, timestamp_is: TimestampIs = "open") -> pd.DataFrame:
    """Read one file (any of ``FORMATS``) into ``BAR_COLUMNS`` + ``source_row``, in file order.

    ``timestamp_is`` says whether a generic file's timestamps are bar open ("open", shifted by one
    ``timeframe`` to the close) or close times; Binance files are always labelled by open time.
    """
    if timestamp_is not in ("open", "close"):
        raise ValueError(f"timestamp_is must be 'open' or 'close', not {timestamp_is!r}")
    timeframe_delta(timeframe)
    label = str(path)
    try:
        return _read_file(Path(path), label, timeframe, timestamp_is)
    except BarValidationError:
        raise
    except Exception as exc:  # any other failure of a reader still names the file, never a traceback
        raise BarValidationError(label, None, "unreadable_file", f"{type(exc).__name__}: {exc}") from None


def _header_fields(data: bytes) -> list[str]:
    """The header line's column names as written (quotes stripped)."""
    import csv

    line = _first_line(data)
    return [f.strip() for f in next(csv.reader([line]))] if line else []


def _read_file(path: Path, label: str, timeframe: str, timestamp_is: str) -> pd.DataFrame:
    fmt = detect_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            raw = pq.read_table(path).to_pandas()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise BarValidationError(label, None, "unknown_format", f"unreadable Parquet: {exc}") from None
        return _read_generic(raw, label, timeframe, timestamp_is, first_row=1)
    if fmt.endswith("_zip"):
        zf, member = _zip_member(path)
        with zf, zf.open(member) as fh:
            data = fh.read()
        source = io.BytesIO(data)
    else:
        with open(path, "rb") as fh:
            data = fh.read(65536)
        source = path
    has_header = not _NUMBER_RE.match(_first_line(data).split(",")[0].strip().strip('"'))
    if fmt.startswith("binance"):
        return _read_binance(source, label, timeframe, has_header)
    raw = _read_csv_text(source, label, None, skip_header=False)
    return _read_generic(raw, label, timeframe, timestamp_is, first_row=2, header=_header_fields(data))


def _check_order(df: pd.DataFrame, label: str) -> None:
    """A single file must be strictly increasing in time (before it is merged with others)."""
    t = df["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    d = np.diff(t)
    bad = np.flatnonzero(d <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        rule = "duplicate_timestamp" if d[i - 1] == 0 else "unsorted_timestamp"
        prev, cur = df["timestamp"].iloc[i - 1], df["timestamp"].iloc[i]
        raise BarValidationError(
            label,
            int(df["source_row"].iloc[i]),
            rule,
            f"{cur} after {prev} at row {int(df['source_row'].iloc[i - 1])}",
        )


def read_bars_files(
    paths: str | Path | Iterable[str | Path], timeframe: str, *, timestamp_is: TimestampIs = "open"
) -> pd.DataFrame:
    """Read and merge several files (e.g. monthly Binance zips) in time order.

    Returns ``BAR_COLUMNS`` + ``source_file`` (str) + ``source_row``. Each file must be strictly
    increasing on its own; a timestamp present in two files raises ``duplicate_timestamp`` naming both.
    """
    path_list = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not path_list:
        raise ValueError("no files given")
    frames = []
    for p in path_list:
        df = read_bars_file(p, timeframe, timestamp_is=timestamp_is)
        _check_order(df, str(p))
        df.insert(len(BAR_COLUMNS), "source_file", str(p))
        frames.append(df)
    merged = pd.concat(frames, ignore_index=True)
    merged = merged.sort_values("timestamp", kind="mergesort", ignore_index=True)
    t = merged["timestamp"].to_numpy(dtype="datetime64[ns]")
    dup = np.flatnonzero(t[1:] == t[:-1])
    if len(dup):
        j = int(dup[0])
        a, b = merged.iloc[j], merged.iloc[j + 1]
        raise BarValidationError(
            b["source_file"],
            int(b["source_row"]),
            "duplicate_timestamp",
            f"bar {b['timestamp']} is also in {a['source_file']}, row {int(a['source_row'])}",
        )
    return merged


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Only the canonical ``BAR_COLUMNS`` (drops ``source_row``/``source_file``)."""
    return df.loc[:, list(BAR_COLUMNS)].reset_index(drop=True)


def load_bars(
    paths: str | Path | Iterable[str | Path],
    timeframe: str,
    *,
    timestamp_is: TimestampIs = "open",
    gap_policy: str = "error",
    calendar: str = "24/7",
    max_gap_bars: int | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read, merge and validate files: the bars (with ``source_file``/``source_row``) and the report.

    ``gap_policy``, ``calendar`` and ``max_gap_bars`` as in
    :func:`~himari_pipeline.market.validation.validate_bars`.
    """
    df = read_bars_files(paths, timeframe, timestamp_is=timestamp_is)
    files = sorted(set(df["source_file"]))
    label = files[0] if len(files) == 1 else ", ".join(files)
    report = validate_bars(
        df,
        timeframe=timeframe,
        file=label,
        gap_policy=gap_policy,
        calendar=calendar,
        max_gap_bars=max_gap_bars,
    )
    return df, report
