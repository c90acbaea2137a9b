"""The split arrays: cut aligned bars/features/regimes into the planned splits, scale, check, summarize.

Where each split lies (warm-up, embargo gaps, live segment) is planned in
:mod:`himari_pipeline.datasets.layout` (re-exported here). Features are standardized with a
per-feature mean and std fitted on TRAIN rows only (separate scalers for raw and denoised); the
fitted values are stored in the metadata and applied to all splits.

Arrays per split (:meth:`SplitArrays.as_dict`): the features, regime ids and confidences, prices,
returns, timestamps and ``gap_before`` (missing expected bars just before each bar, from the raw
bars). Decision at row ``i`` earns ``returns[i + 1]``: ``returns[i] = close[i] / close[i-1] - 1``
is the bar's own return.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from himari_pipeline.datasets.layout import (
    FRACTION_PRESETS,
    LIVE_MODES,
    SPLIT_NAMES,
    SplitConfig,
    SplitPlan,
    bar_years,
    plan_splits,
    required_warmup,
)
from himari_pipeline.regimes.detect import regime_distribution
from himari_pipeline.vocabulary import REGIMES

ARRAY_FIELDS: tuple[str, ...] = (
    "features_raw",
    "features_denoised",
    "regime_ids",
    "regime_confidences",
    "prices",
    "returns",
    "timestamps",
    "gap_before",
)
ARRAY_DTYPES: dict[str, np.dtype] = {
    "features_raw": np.dtype(np.float32),
    "features_denoised": np.dtype(np.float32),
    "regime_ids": np.dtype(np.int8),
    "regime_confidences": np.dtype(np.float32),
    "prices": np.dtype(np.float64),
    "returns": np.dtype(np.float64),
    "timestamps": np.dtype(np.int64),
    "gap_before": np.dtype(np.int64),
}
FORMAT_VERSION = 1


@dataclass
class SplitArrays:
    """One split's arrays, one row per bar (the format the training code reads)."""

    features_raw: np.ndarray
    features_denoised: np.ndarray
    regime_ids: np.ndarray
    regime_confidences: np.ndarray
    prices: np.ndarray
    returns: np.ndarray
    timestamps: np.ndarray
    #: Missing expected bars just before each bar (0 = contiguous); zeros when not given.
    gap_before: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.gap_before is None:
            self.gap_before = np.zeros(len(self.prices), dtype=np.int64)

    @property
    def n_samples(self) -> int:
        return len(self.prices)

    def __getitem__(self, key: str):
        if key == "n_samples":
            return self.n_samples
        if key not in ARRAY_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict:
        """``{'features_raw': (n, F) float32, ..., 'timestamps': (n,) int64 ns UTC, 'n_samples': n}``."""
        return {**{k: getattr(self, k) for k in ARRAY_FIELDS}, "n_samples": self.n_samples}


@dataclass
class DatasetSplits:
    """The four splits and their JSON metadata (feature names, plan, scalers, distributions, versions)."""

    splits: dict[str, SplitArrays]
    metadata: dict

    def __getitem__(self, key: str):
        return self.metadata if key == "metadata" else self.splits[key]

    def to_dict(self) -> dict:
        """The nested-dict form: ``{'train': {...}, ..., 'metadata': {...}}``."""
        return {**{k: v.as_dict() for k, v in self.splits.items()}, "metadata": self.metadata}

    @property
    def feature_names(self) -> list[str]:
        return list(self.metadata["feature_names"])

    def select_features(self, names: Sequence[str] | None) -> DatasetSplits:
        """These splits with only the feature columns ``names``, in that order (None or all: ``self``).

        Raw and denoised features, the feature names and the fitted scalers are cut alike; every other
        array is shared. Unknown names raise ``ValueError`` naming them and the available ones.
        """
        have = self.feature_names
        if names is None or list(names) == have:
            return self
        unknown = [n for n in names if n not in have]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; the splits have: {', '.join(have)}")
        cols = [have.index(n) for n in names]
        meta = json.loads(json.dumps(self.metadata))
        meta["feature_names"] = list(names)
        for scaler in meta.get("scaler", {}).values():
            for stat, values in scaler.items():
                scaler[stat] = [values[j] for j in cols]
        splits = {
            name: dataclasses.replace(
                s,
                features_raw=np.ascontiguousarray(s.features_raw[:, cols]),
                features_denoised=np.ascontiguousarray(s.features_denoised[:, cols]),
            )
            for name, s in self.splits.items()
        }
        return DatasetSplits(splits=splits, metadata=meta)

    def content_hash(self) -> str:
        """sha256 over every array (dtype, shape, bytes) and the canonical metadata JSON."""
        h = hashlib.sha256()
        for name in sorted(self.splits):
            for k in ARRAY_FIELDS:
                a = np.ascontiguousarray(getattr(self.splits[name], k))
                h.update(f"{name}/{k}/{a.dtype.str}/{a.shape}".encode())
                h.update(a.tobytes())
        h.update(json.dumps(self.metadata, sort_keys=True).encode())
        return h.hexdigest()


def _timestamps_ns(frame: pd.DataFrame, what: str) -> np.ndarray:
    if "timestamp" not in frame.columns:
        raise ValueError(f"{what} has no 'timestamp' column")
    return pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True)).asi8


def _check_aligned(inputs: dict[str, pd.DataFrame], n_rows: int) -> np.ndarray:
    ref_name, ref = "bars", _timestamps_ns(inputs["bars"], "bars")
    if len(ref) != n_rows:
        raise ValueError(f"bars have {len(ref)} rows but the split plan was made for {n_rows}")
    for name, frame in inputs.items():
        ts = _timestamps_ns(frame, name)
        if len(ts) != len(ref):
            raise ValueError(
                f"{name} has {len(ts)} rows but {ref_name} has {len(ref)}: inputs are not aligned"
            )
        diff = np.flatnonzero(ts != ref)
        if len(diff):
            i = int(diff[0])
            raise ValueError(
                f"{name} is not aligned with {ref_name} on timestamp: row {i} is "
                f"{pd.Timestamp(ts[i], tz='UTC')} vs {pd.Timestamp(ref[i], tz='UTC')} "
                f"({len(diff)} rows differ)"
            )
    return ref


def _gap_before(bars: pd.DataFrame) -> np.ndarray:
    """The bars' ``gap_before`` column as int64 (zeros for bars stored without one)."""
    if "gap_before" not in bars.columns:
        return np.zeros(len(bars), dtype=np.int64)
    gaps = bars["gap_before"].to_numpy()
    if (gaps < 0).any():
        raise ValueError("bars have a negative gap_before")
    return gaps.astype(np.int64)


def _feature_matrix(frame: pd.DataFrame, names: list[str], what: str) -> np.ndarray:
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks feature columns {missing[:5]} ({len(missing)} missing)")
    return frame[names].to_numpy(dtype=np.float64)


def fit_scaler(x: np.ndarray) -> dict[str, list[float]]:
    """Per-column mean and population std of ``x``; a zero (or non-finite) std is stored as 1.0.

    Columns are made contiguous first so the (pairwise) sums, hence the bits, do not depend on the
    memory layout of the input frame.
    """
    x = np.asfortranarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return {"mean": mean.tolist(), "std": std.tolist()}


def apply_scaler(x: np.ndarray, scaler: dict) -> np.ndarray:
    """``(x - mean) / std`` with a stored scaler, as float32."""
    return ((x - np.asarray(scaler["mean"])) / np.asarray(scaler["std"])).astype(np.float32)


def _first_bad(split: str, field_name: str, bad: np.ndarray, ts: np.ndarray) -> str:
    rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
    i = int(rows[0])
    return (
        f"split {split!r}: {field_name} invalid (NaN/inf or warm-up) at {len(rows)} rows, first at row {i} "
        f"({pd.Timestamp(ts[i], tz='UTC')})"
    )


def build_splits(
    bars: pd.DataFrame,
    features: pd.DataFrame,
    features_denoised: pd.DataFrame,
    regimes: pd.DataFrame,
    feature_names: list[str],
    plan: SplitPlan,
    input_versions: dict | None = None,
) -> DatasetSplits:
    """Cut aligned bars/features/denoised/regimes into the planned splits (see module docstring)."""
    names = [str(c) for c in feature_names]
    if len(set(names)) != len(names) or not names:
        raise ValueError("feature_names must be a non-empty list of unique names")
    inputs = {"bars": bars, "features": features, "features_denoised": features_denoised, "regimes": regimes}
    ts = _check_aligned(inputs, plan.n_rows)
    raw = _feature_matrix(features, names, "features")
    den = _feature_matrix(features_denoised, names, "features_denoised")
    close = bars["close"].to_numpy(dtype=np.float64)
    returns = np.full(len(close), np.nan)
    returns[1:] = close[1:] / close[:-1] - 1.0
    gaps = _gap_before(bars)
    rid = regimes["regime_id"].to_numpy().astype(np.int8)
    conf = regimes["confidence"].to_numpy(dtype=np.float64)

    tr = slice(*plan.ranges["train"])
    for what, x in (("features", raw[tr]), ("features_denoised", den[tr])):
        if not np.isfinite(x).all():
            raise ValueError(_first_bad("train", what, ~np.isfinite(x), ts[tr]))
    scalers = {"raw": fit_scaler(raw[tr]), "denoised": fit_scaler(den[tr])}

    splits: dict[str, SplitArrays] = {}
    for name in SPLIT_NAMES:
        s = slice(*plan.ranges[name])
        arr = SplitArrays(
            features_raw=apply_scaler(raw[s], scalers["raw"]),
            features_denoised=apply_scaler(den[s], scalers["denoised"]),
            regime_ids=rid[s].copy(),
            regime_confidences=conf[s].astype(np.float32),
            prices=close[s].copy(),
            returns=returns[s].copy(),
            timestamps=ts[s].copy(),
            gap_before=gaps[s].copy(),
        )
        for k in ("features_raw", "features_denoised", "regime_confidences", "prices", "returns"):
            bad = ~np.isfinite(getattr(arr, k))
            if bad.any():
                raise ValueError(_first_bad(name, k, bad, arr.timestamps))
        if (arr.regime_ids < 0).any():
            raise ValueError(_first_bad(name, "regime_ids", arr.regime_ids < 0, arr.timestamps))
        splits[name] = arr

    metadata = {
        "format_version": FORMAT_VERSION,
        "feature_names": names,
        "regime_names": list(REGIMES),
        "splits": list(SPLIT_NAMES),
        "plan": plan.to_dict(),
        "config": plan.config.to_dict(),
        "scaler": scalers,
        "n_samples": {k: v.n_samples for k, v in splits.items()},
        "regime_distribution": {k: regime_distribution(v.regime_ids) for k, v in splits.items()},
        "input_versions": dict(input_versions or {}),
        "returns_convention": "returns[i] = prices[i]/prices[i-1] - 1; decision at row i earns returns[i+1]",
        "timestamps": "int64 ns since epoch, UTC, bar close time",
    }
    return DatasetSplits(splits=splits, metadata=json.loads(json.dumps(metadata)))


def check_splits(splits: DatasetSplits, min_embargo: int) -> list[str]:
    """Problems with ``splits`` (empty list = OK): overlap, embargo, ordering, NaN, scaler, shapes."""
    problems: list[str] = []
    plan = splits.metadata.get("plan", {})
    ranges = {k: tuple(v) for k, v in plan.get("ranges", {}).items()}
    order = [k for k in SPLIT_NAMES if k in splits.splits]
    if order != list(SPLIT_NAMES):
        problems.append(f"splits present {sorted(splits.splits)}; expected {list(SPLIT_NAMES)}")
    if int(plan.get("embargo", -1)) < min_embargo:
        problems.append(f"plan embargo {plan.get('embargo')} < required {min_embargo}")
    n_feat = len(splits.metadata.get("feature_names", []))
    steps = []
    for name in order:
        s = splits.splits[name]
        n = s.n_samples
        for k in ARRAY_FIELDS:
            a = getattr(s, k)
            if len(a) != n:
                problems.append(f"{name}: {k} has {len(a)} rows, prices has {n}")
            if a.dtype != ARRAY_DTYPES[k]:
                problems.append(f"{name}: {k} dtype {a.dtype}, expected {ARRAY_DTYPES[k]}")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                problems.append(f"{name}: {k} has {int((~np.isfinite(a)).sum())} NaN/inf values")
        for k in ("features_raw", "features_denoised"):
            if getattr(s, k).ndim != 2 or getattr(s, k).shape[1] != n_feat:
                problems.append(f"{name}: {k} shape {getattr(s, k).shape}, expected (n, {n_feat})")
        if (s.regime_ids < 0).any() or (s.regime_ids >= len(REGIMES)).any():
            problems.append(f"{name}: regime_ids outside 0..{len(REGIMES) - 1} (warm-up rows inside a split)")
        if n == 0:
            problems.append(f"{name}: empty")
            continue
        if not (np.diff(s.timestamps) > 0).all():
            problems.append(f"{name}: timestamps not strictly increasing")
        if name in ranges and ranges[name][1] - ranges[name][0] != n:
            problems.append(
                f"{name}: {n} rows but the plan range {ranges[name]} has {ranges[name][1] - ranges[name][0]}"
            )
        if n > 1:
            steps.append(np.diff(s.timestamps).min())
    bar_ns = int(min(steps)) if steps else 0
    for a, b in zip(order, order[1:], strict=False):
        sa, sb = splits.splits[a], splits.splits[b]
        if sa.n_samples == 0 or sb.n_samples == 0:
            continue
        if sb.timestamps[0] <= sa.timestamps[-1]:
            problems.append(f"{a} and {b} overlap or are out of order ({a} ends after {b} starts)")
            continue
        if a in ranges and b in ranges and ranges[b][0] - ranges[a][1] < min_embargo:
            problems.append(f"embargo {a}|{b} is {ranges[b][0] - ranges[a][1]} rows < {min_embargo}")
        if bar_ns > 0:
            gap_bars = (int(sb.timestamps[0]) - int(sa.timestamps[-1])) // bar_ns - 1
            if gap_bars < min_embargo:
                problems.append(f"embargo {a}|{b} spans {gap_bars} bars of time < {min_embargo}")
    if "train" in splits.splits and splits.splits["train"].n_samples > 1:
        for k in ("features_raw", "features_denoised"):
            x = getattr(splits.splits["train"], k).astype(np.float64)
            mu, sd = np.abs(x.mean(axis=0)), x.std(axis=0)
            if (mu > 1e-3).any() or ((np.abs(sd - 1) > 1e-3) & (sd > 1e-6)).any():
                problems.append(f"train {k} is not standardized (scaler not fitted on the train rows)")
    return problems


def split_summary(splits: DatasetSplits, embargo: int, split_version: str) -> pd.DataFrame:
    """One row per split: size, time range, embargo and regime shares (the lake's summary table)."""
    rows = []
    for name, arr in splits.splits.items():
        dist = regime_distribution(arr.regime_ids) if arr.n_samples else {}
        ts = pd.to_datetime(arr.timestamps, utc=True)
        rows.append(
            {
                "split": name,
                "n_rows": int(arr.n_samples),
                "first_timestamp": ts[0] if arr.n_samples else pd.NaT,
                "last_timestamp": ts[-1] if arr.n_samples else pd.NaT,
                "embargo_bars": int(embargo),
                **{f"share_{r.lower()}": float(dist.get(r, 0.0)) for r in REGIMES},
                "split_version": split_version,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "ARRAY_DTYPES",
    "ARRAY_FIELDS",
    "FORMAT_VERSION",
    "FRACTION_PRESETS",
    "LIVE_MODES",
    "SPLIT_NAMES",
    "DatasetSplits",
    "SplitArrays",
    "SplitConfig",
    "SplitPlan",
    "apply_scaler",
    "bar_years",
    "build_splits",
    "check_splits",
    "fit_scaler",
    "plan_splits",
    "required_warmup",
    "split_summary",
]
