"""The versioned lake: DuckLake (a catalog database plus Parquet files) with a version registry.

Kept whole (over 400 lines): :class:`Lake` is one connection and transaction protocol; its writers,
readers and registry share the catalog's locking, retry and snapshot rules.

Every write is one DuckLake transaction that replaces one partition of one table *and* records a
row in ``himari_versions`` (content hash, input versions, code version, run id). Either both are
visible or neither is: a killed writer leaves no half-written version. Old versions stay readable
through DuckLake time travel (``AT (VERSION => snapshot)``) until :meth:`Lake.expire` removes them.

Files that are not tables (``.npz`` arrays, checkpoints, HTML reports) are copied in atomically
(:func:`~himari_pipeline.storage.atomic.atomic_copy`) under ``artifacts/`` with their sha256 in the
name and registered the same way.

The catalog is a DuckDB file by default (one writer process at a time: connections retry while
another process holds the lock) and can be PostgreSQL for a shared lake; the data path can be
object storage. Both are configuration (``HIMARI_LAKE_CATALOG``, ``HIMARI_LAKE_DATA_PATH``).

A lake moves: DuckLake records the data path it was created with, and every data file relative to it;
the lake is attached with ``OVERRIDE_DATA_PATH`` so a lake copied or moved to another directory opens
at its new place and reads every version there. Paths in the version registry are relative to the root.

SQL: values are always bound parameters; identifiers (tables, columns) are validated names and quoted
with :func:`sql_ident`; the few statements DuckDB does not parameterize (``ATTACH``, ``INSTALL``) take
string literals escaped by :func:`sql_str`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from himari_pipeline.market.bars import validate_name
from himari_pipeline.storage.atomic import atomic_copy
from himari_pipeline.storage.extensions import extensions_for, load_extension
from himari_pipeline.storage.hashing import file_sha256, frame_hash, normalize_frame

VERSIONS_TABLE = "himari_versions"
_ROW = "_row"
_PART = "partition_key"


class LakeError(RuntimeError):
    """A lake operation failed (missing version, incompatible schema, lock timeout)."""


@dataclass(frozen=True)
class Version:
    """One materialization of one asset partition."""

    asset: str
    partition: str
    version: str  # content hash (sha256 of canonical rows, or of the file's bytes)
    snapshot_id: int
    row_count: int | None  # rows of a table; of a file, what the writer counted (None: not rows)
    code_version: str
    run_id: str
    created_at: str
    inputs: dict[str, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    kind: str = "table"  # "table" or "file"
    path: str | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.version[:12]

    def to_dict(self) -> dict:
        return asdict(self)


def _ducklake_extension_file() -> str:
    import duckdb_extension_ducklake

    pattern = os.path.join(os.path.dirname(duckdb_extension_ducklake.__file__), "extensions", "*", "*")
    files = glob.glob(pattern + ".duckdb_extension")
    if not files:
        raise LakeError("the duckdb-extension-ducklake wheel holds no extension file")
    return files[0]


def load_ducklake(con: duckdb.DuckDBPyConnection) -> None:
    """LOAD ducklake, installing it offline from the wheel's extension file the first time."""
    try:
        con.execute("LOAD ducklake")
    except duckdb.Error:
        con.execute(f"INSTALL {sql_str(_ducklake_extension_file())}")
        con.execute("LOAD ducklake")


_PROCESS_LOCK = threading.RLock()
_PROCESS_CON: duckdb.DuckDBPyConnection | None = None
_PROCESS_PID: int | None = None


def _process_connection() -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB with DuckLake loaded (re-created after a fork)."""
    global _PROCESS_CON, _PROCESS_PID
    if _PROCESS_CON is None or _PROCESS_PID != os.getpid():
        con = duckdb.connect()
        load_ducklake(con)
        _PROCESS_CON, _PROCESS_PID = con, os.getpid()
    return _PROCESS_CON


def sql_str(value: str) -> str:
    """A SQL string literal, for the statements that take no parameters (``ATTACH``, ``INSTALL``)."""
    if "\x00" in value:
        raise LakeError(f"NUL byte in {value!r}")
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """A quoted SQL identifier (table or column name): embedded double quotes are doubled."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise LakeError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def lake_relative(root: str | Path, path: str | Path) -> str:
    """``path`` relative to the lake ``root`` when inside it (as tables name files), else as given."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return str(p.relative_to(r)) if p.is_relative_to(r) else str(path)


def _is_lock_error(exc: Exception) -> bool:
    """Another process holds the catalog file, or set up a fresh shared catalog at the same moment."""
    msg = str(exc).lower()
    if "failed to initialize ducklake" in msg:  # two first ATTACHes of an empty PostgreSQL catalog
        return "already exists" in msg or "duplicate key" in msg
    busy = ("lock", "conflicting", "being used by another process", "transaction conflict")
    return any(s in msg for s in busy)


class Lake:
    """A DuckLake lake rooted at ``root`` (catalog + Parquet files + artifacts)."""

    def __init__(
        self,
        root: str | Path,
        catalog: str | None = None,
        data_path: str | None = None,
        lock_timeout_s: float = 600.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.catalog = catalog or os.environ.get("HIMARI_LAKE_CATALOG") or str(self.root / "catalog.ducklake")
        self.data_path = data_path or os.environ.get("HIMARI_LAKE_DATA_PATH") or str(self.root / "files")
        self.lock_timeout_s = lock_timeout_s
        self.artifacts = self.root / "artifacts"
        self._registry_ready = False

    def __repr__(self) -> str:
        return f"Lake(root={str(self.root)!r}, catalog={self.catalog!r})"

    # ------------------------------------------------------------------ connections
    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the lake attached as ``lake``; retries while another process holds the lock.

        One in-memory DuckDB per process keeps the extension loaded; the lake is attached for the
        duration of the block and detached afterwards, so other processes can take the file lock.
        """
        if "://" not in self.data_path:
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        if ":" not in self.catalog.split("/")[0]:
            Path(self.catalog).parent.mkdir(parents=True, exist_ok=True)
        with _PROCESS_LOCK:
            con = _process_connection()
            for name in extensions_for(self.catalog, self.data_path):  # postgres catalog, s3:// files
                load_extension(con, name)
            deadline = time.monotonic() + self.lock_timeout_s
            delay = 0.05
            while True:
                try:
                    con.execute(
                        f"ATTACH {sql_str('ducklake:' + self.catalog)} AS lake "
                        f"(DATA_PATH {sql_str(self.data_path.rstrip('/') + '/')}, OVERRIDE_DATA_PATH true, "
                        "DATA_INLINING_ROW_LIMIT 0)"
                    )
                    if not self._registry_ready:
                        self._ensure_registry(con)
                        self._registry_ready = True
                    break
                except duckdb.Error as exc:
                    with contextlib.suppress(duckdb.Error):
                        con.execute("DETACH DATABASE IF EXISTS lake")
                    if not _is_lock_error(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
            try:
                yield con
            finally:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                con.execute("USE memory")
                con.execute("DETACH lake")

    @staticmethod
    def _ensure_registry(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS lake.{VERSIONS_TABLE} (
                asset VARCHAR, partition VARCHAR, version VARCHAR, commit_tag VARCHAR,
                row_count BIGINT, code_version VARCHAR, run_id VARCHAR, created_at VARCHAR,
                inputs VARCHAR, columns VARCHAR, kind VARCHAR, path VARCHAR, metadata VARCHAR)"""
        )

    # ------------------------------------------------------------------ writes
    def write_table(
        self,
        asset: str,
        partition: str,
        df: pd.DataFrame,
        *,
        inputs: dict[str, str] | None = None,
        code_version: str = "",
        run_id: str = "",
        metadata: dict | None = None,
    ) -> Version:
        """Replace ``partition`` of table ``asset`` with ``df`` and register the new version atomically.

        Writing content identical to the latest version (same hash and inputs) records nothing new
        and returns that version.
        """
        validate_name("asset", asset)
        validate_name("partition", partition)
        frame = normalize_frame(df)
        if _PART in frame.columns or _ROW in frame.columns:
            raise LakeError(f"columns {_PART!r} and {_ROW!r} are reserved by the lake")
        digest = frame_hash(frame)
        inputs = dict(inputs or {})
        staged = frame.assign(**{_ROW: range(len(frame))})
        staged.insert(0, _PART, partition)
        tag = f"{asset}/{partition}/{uuid.uuid4().hex}"
        with self.connect() as con:
            found = self._versions(con, asset, partition)
            if found and found[-1].version == digest and found[-1].inputs == inputs:
                return found[-1]
            con.register("staged", staged)

            def body() -> Version:
                con.execute("CALL lake.set_commit_message('himari', ?)", [tag])
                self._ensure_table(con, asset, staged)
                table = sql_ident(asset)
                con.execute(f"DELETE FROM lake.{table} WHERE {_PART} = ?", [partition])
                cols = ", ".join(sql_ident(c) for c in staged.columns)
                con.execute(f"INSERT INTO lake.{table} ({cols}) SELECT {cols} FROM staged")
                return self._register(
                    con,
                    asset,
                    partition,
                    digest,
                    tag,
                    len(frame),
                    code_version,
                    run_id,
                    inputs,
                    list(frame.columns),
                    "table",
                    None,
                    metadata,
                )

            try:
                version = self._transaction(con, body)
            finally:
                con.unregister("staged")
            return self._with_snapshot(con, version, tag)

    def write_file(
        self,
        asset: str,
        partition: str,
        src: str | Path,
        *,
        inputs: dict[str, str] | None = None,
        code_version: str = "",
        run_id: str = "",
        metadata: dict | None = None,
        row_count: int | None = None,
    ) -> Version:
        """Move the finished file ``src`` into the lake's artifacts (content-addressed) and register it.

        ``row_count``: the rows the file holds (e.g. samples of an ``.npz``), None for a document.
        """
        validate_name("asset", asset)
        validate_name("partition", partition)
        src = Path(src)
        digest = file_sha256(src)
        inputs = dict(inputs or {})
        latest = self.latest(asset, partition)
        if latest is not None and latest.version == digest and latest.inputs == inputs:
            src.unlink(missing_ok=True)
            return latest
        dest_dir = self.artifacts / asset / partition
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{digest[:16]}{''.join(src.suffixes)}"
        if not dest.exists():
            atomic_copy(src, dest)
        src.unlink(missing_ok=True)
        tag = f"{asset}/{partition}/{uuid.uuid4().hex}"
        rel = str(dest.relative_to(self.root))
        with self.connect() as con:

            def body() -> Version:
                con.execute("CALL lake.set_commit_message('himari', ?)", [tag])
                return self._register(
                    con,
                    asset,
                    partition,
                    digest,
                    tag,
                    None if row_count is None else int(row_count),
                    code_version,
                    run_id,
                    inputs,
                    [],
                    "file",
                    rel,
                    metadata,
                )

            return self._with_snapshot(con, self._transaction(con, body), tag)

    def _transaction(self, con: duckdb.DuckDBPyConnection, body: Callable[[], Version]) -> Version:
        """Run ``body`` in one transaction; retry it when a concurrent writer committed first.

        Only a shared catalog (PostgreSQL) has concurrent writers: DuckLake then rejects the later
        commit that touches the same table ("Transaction conflict"), and the whole write is redone
        on the new snapshot.
        """
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            con.execute("BEGIN")
            try:
                result = body()
                con.execute("COMMIT")
                return result
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):  # a failed COMMIT has already ended it
                    con.execute("ROLLBACK")
                if "transaction conflict" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)

    @staticmethod
    def _ensure_table(con: duckdb.DuckDBPyConnection, asset: str, staged: pd.DataFrame) -> None:
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'lake' AND table_name = ?", [asset]
        ).fetchone()[0]
        table = sql_ident(asset)
        if not exists:
            con.execute(f"CREATE TABLE lake.{table} AS SELECT * FROM staged LIMIT 0")
            con.execute(f"ALTER TABLE lake.{table} SET PARTITIONED BY ({_PART})")
            return
        have = {r[0]: r[1] for r in con.execute(f"DESCRIBE lake.{table}").fetchall()}
        want = {r[0]: r[1] for r in con.execute("DESCRIBE staged").fetchall()}
        for col, typ in want.items():
            if col not in have:  # the type comes from DuckDB's own DESCRIBE of the staged frame
                con.execute(f"ALTER TABLE lake.{table} ADD COLUMN {sql_ident(col)} {typ}")
            elif have[col] != typ:
                raise LakeError(
                    f"table {asset!r}: column {col!r} is {have[col]} in the lake but {typ} in the new "
                    "version; rename the column or the asset"
                )

    @staticmethod
    def _register(
        con, asset, partition, digest, tag, rows, code_version, run_id, inputs, columns, kind, path, metadata
    ) -> Version:
        created = datetime.now(UTC).isoformat(timespec="microseconds")
        con.execute(
            f"INSERT INTO lake.{VERSIONS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                asset,
                partition,
                digest,
                tag,
                rows,
                code_version,
                run_id,
                created,
                json.dumps(inputs, sort_keys=True),
                json.dumps(columns),
                kind,
                path,
                json.dumps(metadata or {}, sort_keys=True, default=str),
            ],
        )
        return Version(
            asset=asset,
            partition=partition,
            version=digest,
            snapshot_id=-1,
            row_count=rows,
            code_version=code_version,
            run_id=run_id,
            created_at=created,
            inputs=inputs,
            columns=columns,
            kind=kind,
            path=path,
            metadata=metadata or {},
        )

    @staticmethod
    def _with_snapshot(con, version: Version, tag: str) -> Version:
        sid = con.execute(
            "SELECT snapshot_id FROM lake.snapshots() WHERE commit_message = ?", [tag]
        ).fetchone()
        return Version(**{**version.to_dict(), "snapshot_id": int(sid[0])})

    # ------------------------------------------------------------------ reads
    def versions(self, asset: str | None = None, partition: str | None = None) -> list[Version]:
        """All registered versions, oldest first, optionally filtered."""
        with self.connect() as con:
            return self._versions(con, asset, partition)

    def _versions(self, con, asset: str | None, partition: str | None) -> list[Version]:
        where, params = [], []
        if asset is not None:
            where.append("v.asset = ?")
            params.append(asset)
        if partition is not None:
            where.append("v.partition = ?")
            params.append(partition)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = con.execute(
            f"""SELECT v.*, coalesce(s.snapshot_id, -1) FROM lake.{VERSIONS_TABLE} v
                LEFT JOIN lake.snapshots() s ON s.commit_message = v.commit_tag
                {clause} ORDER BY v.created_at, s.snapshot_id NULLS FIRST""",
            params,
        ).fetchall()
        return [self._row_to_version(r) for r in rows]

    @staticmethod
    def _row_to_version(r: tuple) -> Version:
        (
            asset,
            partition,
            version,
            _tag,
            rows,
            code,
            run_id,
            created,
            inputs,
            columns,
            kind,
            path,
            meta,
            sid,
        ) = r
        return Version(
            asset=asset,
            partition=partition,
            version=version,
            snapshot_id=int(sid),
            row_count=None if rows is None else int(rows),
            code_version=code,
            run_id=run_id,
            created_at=created,
            inputs=json.loads(inputs),
            columns=json.loads(columns),
            kind=kind,
            path=path,
            metadata=json.loads(meta),
        )

    def latest(self, asset: str, partition: str) -> Version | None:
        """The newest version of ``asset``/``partition``, or None."""
        found = self.versions(asset, partition)
        return found[-1] if found else None

    def get_version(self, asset: str, partition: str, version: str | None = None) -> Version:
        """The version whose content hash starts with ``version`` (the latest when None)."""
        return self._pick(self.versions(asset, partition), asset, partition, version)

    def _pick(self, found: list[Version], asset: str, partition: str, version: str | None) -> Version:
        if version is not None:
            found = [v for v in found if v.version.startswith(version)]
        if not found:
            raise LakeError(f"no version {version or '(latest)'} of {asset}/{partition} in {self.root}")
        return found[-1]

    def read_table(self, asset: str, partition: str, version: str | None = None) -> pd.DataFrame:
        """Rows of one partition as of ``version`` (content-hash prefix; latest when None)."""
        with self.connect() as con:
            found = self._versions(con, asset, partition)
            v = self._pick(found, asset, partition, version)
            if v.kind != "table":
                raise LakeError(f"{asset}/{partition} is a file asset; use file_path()")
            is_latest = v == found[-1]
            if not is_latest and v.snapshot_id < 0:
                raise LakeError(f"version {v.short} of {asset}/{partition} was removed by retention")
            at = "" if is_latest else f" AT (VERSION => {int(v.snapshot_id)})"
            cols = ", ".join(sql_ident(c) for c in v.columns)
            df = con.execute(
                f"SELECT {cols} FROM lake.{sql_ident(asset)}{at} WHERE {_PART} = ? ORDER BY {_ROW}",
                [partition],
            ).df()
        return normalize_frame(df)

    def file_path(self, asset: str, partition: str, version: str | None = None) -> Path:
        """Path of a file asset's version."""
        v = self.get_version(asset, partition, version)
        if v.kind != "file" or v.path is None:
            raise LakeError(f"{asset}/{partition} is a table asset; use read_table()")
        return self.root / v.path

    def partitions(self, asset: str) -> list[str]:
        """Partitions that have at least one version of ``asset``."""
        return sorted({v.partition for v in self.versions(asset)})

    # ------------------------------------------------------------------ retention
    def expire(self, older_than: datetime | str | None = None) -> int:
        """Remove snapshots older than ``older_than`` and the data files only they used.

        ``older_than`` is a datetime or an ISO-8601 timestamp string (UTC when it names no zone);
        None means now. Anything else is refused before it reaches SQL (it is a bound parameter).
        Versions newer than that stay readable; returns how many snapshots were expired.
        """
        cutoff = _timestamp(older_than)
        with self.connect() as con:
            before = con.execute("SELECT count(*) FROM lake.snapshots()").fetchone()[0]
            con.execute(
                "CALL ducklake_expire_snapshots('lake', older_than => ?::TIMESTAMPTZ)", [cutoff.isoformat()]
            )
            con.execute("CALL ducklake_cleanup_old_files('lake', cleanup_all => true)")
            after = con.execute("SELECT count(*) FROM lake.snapshots()").fetchone()[0]
        return int(before - after)


def _timestamp(value: datetime | str | None) -> datetime:
    """A timezone-aware datetime from a datetime, an ISO-8601 string or None (now); else LakeError."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise LakeError(f"not an ISO-8601 timestamp: {value!r} (e.g. '2026-01-31T00:00:00')") from None
    if not isinstance(value, datetime):
        raise LakeError(f"expected a datetime or an ISO-8601 string, got {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
