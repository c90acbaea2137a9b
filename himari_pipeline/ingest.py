"""Adding files to a dataset's raw folder: validate, copy, store the settings, undo on failure.

``himari ingest`` runs, under one lock per dataset (so two ingests into one dataset never race):

1. :func:`prepare`: the dataset's stored settings (``dataset.json``) updated by the command's options,
   and the existing files *plus* the new ones validated exactly as the data job will validate them
   (:func:`himari_pipeline.sources.load_files` with those settings). A rejected file changes nothing.
2. :func:`commit`: the new files copied (atomically, one by one) and the settings stored.
3. :func:`rollback`: when the data job fails afterwards, the copied files are removed and the previous
   settings restored, so the raw folder is as it was before the command.

Trades (``himari ingest --ticks``) go through :func:`prepare_ticks` first: with the trades still pending
from the last call (``.ticks_pending.parquet`` in the dataset folder), they are aggregated into bars on
the dataset's calendar (:mod:`himari_pipeline.market.ticks`); the final bars become one bar file that
steps 1-3 treat like any other, and the trades of the interval still open are stored (with the time
of the last trade read) for the next call, by :func:`commit` and undone by :func:`rollback`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from himari_pipeline import sources
from himari_pipeline.market.bars import parse_dataset_key, timeframe_delta
from himari_pipeline.market.settings import DatasetSettings, read_settings, settings_path, write_settings
from himari_pipeline.market.validation import ValidationReport
from himari_pipeline.storage.atomic import atomic_copy, atomic_write_bytes
from himari_pipeline.storage.hashing import file_sha256


class IngestError(ValueError):
    """A file or option the ingest refuses before reading any bars."""


@dataclass
class IngestPlan:
    """What :func:`commit` will do: copy ``new`` into ``folder`` and store ``settings``."""

    key: str
    folder: Path
    new: list[Path]
    already_present: list[Path]
    settings: DatasetSettings
    bars: pd.DataFrame
    report: ValidationReport


@dataclass
class Applied:
    """What :func:`commit` changed, to undo it."""

    folder: Path
    copied: list[Path] = field(default_factory=list)
    settings_before: str | None = None  # the previous settings file's text (None: there was none)
    settings_written: bool = False
    pending_before: bytes | None = None  # the previous pending-trades file (None: there was none)
    pending_written: bool = False


PENDING_TICKS = ".ticks_pending.parquet"
_LAST_TRADE_KEY = b"himari_last_trade"


@dataclass
class TickPlan:
    """Trades turned into bars: the bar file to ingest (None: no bar closed yet), the trades left
    pending and what was read."""

    bar_file: Path | None
    pending: pd.DataFrame
    last_trade: pd.Timestamp
    trades: int
    dropped: int
    bars: int


def pending_ticks(folder: Path) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    """The trades still pending in a dataset folder and the time of the last trade ingested."""
    import pyarrow.parquet as pq

    path = folder / PENDING_TICKS
    if not path.is_file():
        return pd.DataFrame(columns=["timestamp", "price", "size"]), None
    table = pq.read_table(path)
    last = (table.schema.metadata or {}).get(_LAST_TRADE_KEY)
    return table.to_pandas(), None if last is None else pd.Timestamp(last.decode())


def prepare_ticks(
    key: str, paths: list[Path], raw_root: Path, settings: DatasetSettings, staging: Path
) -> TickPlan:
    """Read and validate trade files, add the pending trades, aggregate; the final bars are written to
    ``staging`` as a generic bar file (``timestamp`` = bar open time, plus ``trades`` and ``vwap``)."""
    from himari_pipeline.market.ticks import aggregate_ticks, read_ticks_files

    _, timeframe = parse_dataset_key(key)
    paths = check_paths(paths)
    before, last = pending_ticks(sources.dataset_folder(key, raw_root))
    new = read_ticks_files(paths, after=last)
    new = new[["timestamp", "price", "size"]]
    stream = pd.concat([before, new], ignore_index=True) if len(before) else new.reset_index(drop=True)
    out = aggregate_ticks(stream, timeframe, settings.calendar)
    bar_file = None
    if not out.bars.empty:
        opens = out.bars["timestamp"] - timeframe_delta(timeframe)
        fmt = "%Y%m%dT%H%M%S"
        bar_file = staging / f"ticks_{opens.iloc[0]:{fmt}}_{opens.iloc[-1]:{fmt}}.parquet"
        out.bars.assign(timestamp=opens).to_parquet(bar_file, index=False)
    return TickPlan(bar_file, out.pending[["timestamp", "price", "size"]], new["timestamp"].iloc[-1],
                    len(new), out.dropped, len(out.bars))  # fmt: skip


def commit_pending(folder: Path, plan: TickPlan, applied: Applied | None = None) -> None:
    """Store the pending trades and the last trade's time (atomically); ``applied`` (if given) records
    the undo for :func:`rollback`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / PENDING_TICKS
    folder.mkdir(parents=True, exist_ok=True)
    before = path.read_bytes() if path.is_file() else None
    table = pa.Table.from_pandas(plan.pending, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _LAST_TRADE_KEY: plan.last_trade.isoformat().encode()}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    if applied is not None:
        applied.pending_before, applied.pending_written = before, True


def check_paths(paths: list[Path]) -> list[Path]:
    """The files as given, if each exists and is a kind the data job reads; :class:`IngestError` otherwise."""
    if not paths:
        raise IngestError("no files given")
    for p in paths:
        if not Path(p).is_file():
            raise IngestError(f"{p}: no such file")
        if not sources.is_supported(Path(p)):
            raise IngestError(
                f"{p}: not a file the data job reads: use {', '.join(sources.SUPPORTED_SUFFIXES)} "
                "(names not starting with '.')"
            )
    return [Path(p) for p in paths]


@contextlib.contextmanager
def dataset_lock(key: str, lake: Path, on_wait=None) -> Iterator[None]:
    """Hold the dataset's ingest lock (``<lake>/.locks/<key>.lock``); ``on_wait()`` is called if busy."""
    parse_dataset_key(key)
    path = Path(lake) / ".locks" / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def resolve_settings(
    stored: DatasetSettings,
    calendar: str | None = None,
    gap_policy: str | None = None,
    max_gap_bars: int | None = None,
) -> DatasetSettings:
    """The stored settings with the options given on the command line (None: keep the stored one)."""
    changes = {}
    if calendar is not None:
        changes["calendar"] = calendar
    if gap_policy is not None:
        changes["gap_policy"] = gap_policy
    if max_gap_bars is not None:
        changes["max_gap_bars"] = max_gap_bars
    return replace(stored, **changes)


def prepare(key: str, paths: list[Path], raw_root: Path, settings: DatasetSettings) -> IngestPlan:
    """Validate the dataset's files plus ``paths`` under ``settings``; raises ``BarValidationError``."""
    _, timeframe = parse_dataset_key(key)
    paths = check_paths(paths)
    folder = sources.dataset_folder(key, raw_root)
    existing = sources.dataset_files(key, raw_root)
    known = {file_sha256(p) for p in existing}
    new, present, seen = [], [], set()
    for p in paths:
        digest = file_sha256(p)
        (present if digest in known or digest in seen else new).append(p)
        seen.add(digest)
    names = [p.name for p in existing] + [p.name for p in new]
    if len(set(names)) != len(names):
        raise IngestError(
            f"a different file with the same name already exists in {folder}; rename the new file"
        )
    bars, report = sources.load_files(existing + new, timeframe, settings)
    return IngestPlan(key, folder, new, present, settings, bars, report)


def commit(plan: IngestPlan) -> Applied:
    """Copy the new files and store the settings (each step atomic); returns what to undo."""
    _, timeframe = parse_dataset_key(plan.key)
    plan.folder.mkdir(parents=True, exist_ok=True)
    stored = settings_path(plan.folder)
    applied = Applied(plan.folder, settings_before=stored.read_text() if stored.is_file() else None)
    try:
        for p in plan.new:
            applied.copied.append(atomic_copy(p, plan.folder / p.name))
        if applied.settings_before is None or read_settings(plan.folder) != plan.settings:
            write_settings(plan.folder, plan.settings, timeframe)
            applied.settings_written = True
    except BaseException:
        rollback(applied)
        raise
    return applied


def _restore(path: Path, before: bytes | None) -> str:
    """Put ``path`` back as it was: ``before``'s bytes, or no file (None); says which."""
    if before is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return f"removed {path}"
    atomic_write_bytes(path, before)
    return f"restored {path}"


def rollback(applied: Applied) -> list[str]:
    """Undo :func:`commit`; returns what was undone, one line each."""
    done = []
    for path in applied.copied:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            done.append(f"removed {path}")
    if applied.pending_written:
        done.append(_restore(applied.folder / PENDING_TICKS, applied.pending_before))
    if applied.settings_written:
        before = applied.settings_before
        done.append(_restore(settings_path(applied.folder), None if before is None else before.encode()))
    with contextlib.suppress(OSError):
        applied.folder.rmdir()  # only when empty: a dataset created by this ingest
        applied.folder.parent.rmdir()
    return done
