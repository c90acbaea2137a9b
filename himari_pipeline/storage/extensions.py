"""Offline install and load of DuckDB extensions shipped as ``duckdb-extension-*`` wheels.

DuckDB downloads extensions from its own repository on first use; a machine without that network
installs them from the wheels on PyPI instead (each pins the exact ``duckdb`` version). ``postgres``
serves a PostgreSQL DuckLake catalog, ``httpfs`` an object-store data path (``s3://``, ``gs://``,
``https://``); ``ducklake`` itself is loaded by :func:`himari_pipeline.storage.lake.load_ducklake`.
"""

from __future__ import annotations

import glob
import importlib
import os

import duckdb

#: extension name -> (canonical name DuckDB registers it under, wheel modules that ship it, pip name)
EXTENSION_WHEELS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "postgres": (
        "postgres_scanner",
        ("duckdb_extension_postgres_scanner", "duckdb_extension_postgres"),
        "duckdb-extension-postgres-scanner",
    ),
    "httpfs": ("httpfs", ("duckdb_extension_httpfs",), "duckdb-extension-httpfs"),
}

#: URL schemes of a data path that need ``httpfs``
OBJECT_STORE_SCHEMES = ("s3://", "s3a://", "r2://", "gs://", "gcs://", "http://", "https://")


class ExtensionError(RuntimeError):
    """An extension is neither installed nor available from its wheel."""


def extension_file(name: str) -> str | None:
    """The ``.duckdb_extension`` file of ``name`` inside its installed wheel, or None."""
    _, modules, _ = EXTENSION_WHEELS[name]
    for module in modules:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        root = os.path.dirname(mod.__file__ or "")
        files = sorted(glob.glob(os.path.join(root, "extensions", "*", "*.duckdb_extension")))
        if files:
            return files[0]
    return None


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD ``name``, installing it offline from its wheel the first time.

    Raises :class:`ExtensionError` naming the pip package when neither DuckDB's extension directory
    nor an installed wheel has it.
    """
    if name not in EXTENSION_WHEELS:
        raise ExtensionError(f"unknown extension {name!r}; expected one of {sorted(EXTENSION_WHEELS)}")
    canonical, _, pip_name = EXTENSION_WHEELS[name]
    try:
        con.execute(f"LOAD {canonical}")
        return
    except duckdb.Error:
        pass
    path = extension_file(name)
    if path is None:
        raise ExtensionError(
            f"the DuckDB extension {name!r} is not installed: pip install '{pip_name}=={duckdb.__version__}'"
        )
    con.execute("INSTALL " + "'" + path.replace("'", "''") + "'")
    con.execute(f"LOAD {canonical}")


def extensions_for(catalog: str, data_path: str) -> list[str]:
    """The extensions a DuckLake with this catalog string and data path needs besides ``ducklake``."""
    needed = []
    if catalog.startswith("postgres:"):
        needed.append("postgres")
    if data_path.lower().startswith(OBJECT_STORE_SCHEMES):
        needed.append("httpfs")
    return needed
