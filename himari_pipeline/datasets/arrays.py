"""Portable storage of :class:`DatasetSplits`: one ``.npz`` file, or one long table for the lake.

The ``.npz`` needs nothing but numpy and json to read (no pickle, no project import)::

    import json, numpy as np
    z = np.load(path, allow_pickle=False)
    meta = json.loads(str(z["metadata_json"]))
    train = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("train/")}

Keys: ``<split>/<field>`` for the arrays of :data:`ARRAY_FIELDS`, ``<split>/n_samples`` (0-d int64)
and ``metadata_json`` (0-d numpy unicode string). Files written before ``gap_before`` existed load
with zero gaps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.datasets.splits import ARRAY_DTYPES, ARRAY_FIELDS, DatasetSplits, SplitArrays
from himari_pipeline.storage.atomic import atomic_open

METADATA_KEY = "metadata_json"
#: Arrays added after the format's first files; absent ones take :class:`SplitArrays`' defaults.
OPTIONAL_FIELDS: frozenset[str] = frozenset({"gap_before"})


def export_npz(splits: DatasetSplits, path: str | os.PathLike, compressed: bool = False) -> Path:
    """Write ``splits`` to ``path`` atomically (temp file in the same directory, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, np.ndarray] = {METADATA_KEY: np.array(json.dumps(splits.metadata, sort_keys=True))}
    for name, s in splits.splits.items():
        for k in ARRAY_FIELDS:
            payload[f"{name}/{k}"] = np.ascontiguousarray(getattr(s, k), dtype=ARRAY_DTYPES[k])
        payload[f"{name}/n_samples"] = np.array(s.n_samples, dtype=np.int64)
    with atomic_open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **payload)
    return path


def load_npz(path: str | os.PathLike) -> DatasetSplits:
    """Read a file written by :func:`export_npz` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        if METADATA_KEY not in z.files:
            raise ValueError(f"{path}: not a HIMARI dataset npz (no {METADATA_KEY!r} entry)")
        metadata = json.loads(str(z[METADATA_KEY]))
        splits = {}
        for name in metadata["splits"]:
            arrays = {}
            for k in ARRAY_FIELDS:
                key = f"{name}/{k}"
                if key not in z.files and k in OPTIONAL_FIELDS:
                    continue
                if key not in z.files:
                    raise ValueError(f"{path}: missing array {key!r}")
                arrays[k] = z[key]
            s = SplitArrays(**arrays)
            n = int(z[f"{name}/n_samples"])
            if n != s.n_samples:
                raise ValueError(f"{path}: {name}/n_samples={n} but the arrays have {s.n_samples} rows")
            splits[name] = s
    return DatasetSplits(splits=splits, metadata=metadata)


def splits_to_frame(splits: DatasetSplits) -> pd.DataFrame:
    """Long table, one row per bar: ``split``, ``timestamp``, ``price``, ``return``, ``regime_id``,
    ``regime_confidence``, ``gap_before``, then ``raw_<name>`` and ``den_<name>`` per feature (float32)."""
    names = splits.feature_names
    parts = []
    for split, s in splits.splits.items():
        cols = {
            "split": np.full(s.n_samples, split, dtype=object),
            "timestamp": pd.to_datetime(s.timestamps, utc=True),
            "price": s.prices,
            "return": s.returns,
            "regime_id": s.regime_ids,
            "regime_confidence": s.regime_confidences,
            "gap_before": s.gap_before,
        }
        cols.update({f"raw_{n}": s.features_raw[:, j] for j, n in enumerate(names)})
        cols.update({f"den_{n}": s.features_denoised[:, j] for j, n in enumerate(names)})
        parts.append(pd.DataFrame(cols))
    return pd.concat(parts, ignore_index=True)


def splits_from_frame(df: pd.DataFrame, metadata: dict) -> DatasetSplits:
    """Rebuild the arrays of :func:`splits_to_frame` (rows sorted by timestamp within each split)."""
    names = list(metadata["feature_names"])
    raw_cols = [f"raw_{n}" for n in names]
    den_cols = [f"den_{n}" for n in names]
    missing = [c for c in ["split", "timestamp", "price", "return", "regime_id", "regime_confidence"]
               + raw_cols + den_cols if c not in df.columns]  # fmt: skip
    if missing:
        raise ValueError(f"splits table lacks columns {missing[:5]} ({len(missing)} missing)")
    splits = {}
    for name in metadata["splits"]:
        part = df[df["split"] == name].sort_values("timestamp", kind="stable")
        s = SplitArrays(
            features_raw=part[raw_cols].to_numpy(dtype=np.float32).reshape(len(part), len(names)),
            features_denoised=part[den_cols].to_numpy(dtype=np.float32).reshape(len(part), len(names)),
            regime_ids=part["regime_id"].to_numpy().astype(np.int8),
            regime_confidences=part["regime_confidence"].to_numpy(dtype=np.float32),
            prices=part["price"].to_numpy(dtype=np.float64),
            returns=part["return"].to_numpy(dtype=np.float64),
            timestamps=pd.DatetimeIndex(pd.to_datetime(part["timestamp"], utc=True)).asi8.astype(np.int64),
            gap_before=part["gap_before"].to_numpy(dtype=np.int64) if "gap_before" in part else None,
        )
        expected = metadata.get("n_samples", {}).get(name)
        if expected is not None and expected != s.n_samples:
            raise ValueError(f"splits table has {s.n_samples} rows for {name!r}, metadata says {expected}")
        splits[name] = s
    return DatasetSplits(splits=splits, metadata=json.loads(json.dumps(metadata)))
