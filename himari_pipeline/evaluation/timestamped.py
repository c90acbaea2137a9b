"""A user's file of timestamped rows (CSV or Parquet): the checks every such file gets.

Positions (``himari evaluate``) and exit entries share them: the file exists and reads, the required
columns are there, it has rows, every timestamp parses (UTC; naive = UTC) and none repeats. A broken
rule raises the caller's error class with ``FILE, row N: rule RULE: detail`` (rows 1-based, data rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def rule_error(error: type[ValueError], path: Path, row: int | None, rule: str, detail: str) -> ValueError:
    """``error`` with the message naming file, row and rule."""
    where = f", row {row}" if row is not None else ""
    return error(f"{path.name}{where}: rule {rule}: {detail}")


def read_timestamped(
    path: str | Path, columns: Sequence[str], error: type[ValueError]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The file's rows (column names stripped; CSV timestamps kept as text) and their timestamps as
    int64 ns UTC, in file order."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={"timestamp": str}, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise rule_error(error, path, None, "not_utf8", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file, not a traceback
        raise rule_error(error, path, None, "unreadable", f"{type(exc).__name__}: {exc}") from None
    cols = [str(c).strip() for c in frame.columns]
    frame.columns = cols
    for need in columns:
        if need not in cols:
            raise rule_error(
                error, path, None, "missing_column", f"no {need!r} column (columns: {', '.join(cols)})"
            )
    if frame.empty:
        raise rule_error(error, path, None, "empty", "no rows")
    ts = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="mixed")
    bad = np.flatnonzero(ts.isna().to_numpy())
    if len(bad):
        raise rule_error(
            error, path, int(bad[0]) + 1, "bad_timestamp", f"cannot parse {frame['timestamp'].iloc[bad[0]]!r}"
        )
    ns = pd.DatetimeIndex(ts).asi8
    dup = np.flatnonzero(pd.Series(ns).duplicated().to_numpy())
    if len(dup):
        raise rule_error(
            error, path, int(dup[0]) + 1, "duplicate_timestamp", f"{ts.iloc[dup[0]]} appears twice"
        )
    return frame, ns
