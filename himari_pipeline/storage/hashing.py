"""Content hashes: a table's version is the sha256 of a canonical serialisation of its rows."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pyarrow as pa


def normalize_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes so a frame hashes the same before writing and after reading back.

    Timezone-aware timestamps become ``datetime64[ns, UTC]``; the index is reset; every NaN of a float
    column becomes the one canonical quiet NaN (``-NaN`` or a NaN with a payload would otherwise hash
    differently from the NaN that Parquet and DuckDB hand back).
    """
    out = df.reset_index(drop=True).copy()
    for col in out.columns:
        s = out[col]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
            values = s.to_numpy(copy=True)
            nan = np.isnan(values)
            if nan.any():
                values[nan] = np.nan
                out[col] = values
        elif isinstance(s.dtype, pd.DatetimeTZDtype):
            out[col] = s.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        elif pd.api.types.is_datetime64_dtype(s.dtype):
            out[col] = s.astype("datetime64[ns]").dt.tz_localize("UTC")
    return out


def frame_hash(df: pd.DataFrame) -> str:
    """sha256 of the Arrow IPC serialisation of the normalised frame (column names, dtypes, values)."""
    table = pa.Table.from_pandas(normalize_frame(df), preserve_index=False).replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _module_file(name: str) -> Path:
    """The source file of module ``name`` found from its top package, importing none of its parents."""
    top, *rest = name.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"no package {top!r}")
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    raise ModuleNotFoundError(f"no module {name!r} at {base}")


def code_version(*modules: ModuleType | str) -> str:
    """Short hash of the source of the given modules: changes when the code computing an asset does.

    A module may be given by its dotted name: its file is read without importing it (the Dagster
    definitions name the training modules this way, so loading them does not import torch); the hash
    is the same either way."""
    h = hashlib.sha256()
    for mod in modules:
        if isinstance(mod, str):
            text = _module_file(mod).read_text()
        else:
            text = inspect.getsource(mod)
        h.update(text.encode())
    return h.hexdigest()[:12]
