"""Incremental planning: continue each data table from its own stored state, or recompute it.

One function per table (:func:`update_features`, :func:`update_denoised`, :func:`update_regimes`)
takes the new input (bars, or the feature table) and what the lake holds for *that* table
(:class:`Stored`: row count, the content hash of the input it was computed from, its code version
and its append state) and returns an :class:`Update`: the whole new table, the state to store with
it (without the bars' tail, which the stored input holds: a few hundred bytes), and how it was
made. When the new input *extends* the stored one (its first rows are exactly the stored input, by
content hash) and the code and parameters are unchanged, only the new rows are computed
(:mod:`himari_pipeline.features.append`, :mod:`himari_pipeline.regimes.append`, the EKF's
:class:`~himari_pipeline.ekf.vectorized.EKFState`), bit-identical to a full recompute. Anything
else recomputes in full through the same append path from an empty state, so nothing is computed twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from himari_pipeline.ekf.model import EKFParams
from himari_pipeline.ekf.vectorized import EKFState, denoise_features_with_state
from himari_pipeline.features.append import FeatureState, append_features
from himari_pipeline.regimes.append import RegimeState, append_regimes
from himari_pipeline.regimes.detect import RegimeParams
from himari_pipeline.storage.hashing import frame_hash


@dataclass
class Stored:
    """What the lake holds for one table: ``n_rows`` rows (read by ``load``), computed by
    ``code_version`` from the input whose content hash is ``input_version``, and its append state."""

    n_rows: int
    input_version: str | None
    code_version: str
    state: dict | None
    load: Callable[[], pd.DataFrame]


@dataclass
class Update:
    """The new table, the JSON-ready state to store with it, and how it was computed."""

    table: pd.DataFrame
    state: dict
    mode: str  # "full" or "incremental"
    appended: int
    seconds: float
    reason: str = ""  # why in full

    def metadata(self) -> dict:
        """``mode``, ``appended_rows``, ``compute_seconds`` (+ ``full_reason``) for the lake."""
        out = {"mode": self.mode, "appended_rows": self.appended, "compute_seconds": round(self.seconds, 6)}
        return {**out, "full_reason": self.reason} if self.reason else out


def _extends(rows: pd.DataFrame, n_old: int, old_version: str | None) -> bool:
    """True when ``rows[:n_old]`` is exactly the table whose content hash is ``old_version``."""
    return bool(old_version) and len(rows) >= n_old and frame_hash(rows.iloc[:n_old]) == old_version


def _why_full(stored: Stored | None, code: str, inputs: pd.DataFrame, what: str) -> str:
    """Why the table cannot be continued ("" when it can, state permitting)."""
    if stored is None:
        return "no stored version"
    if stored.code_version != code:
        return f"code version changed ({stored.code_version} -> {code})"
    if not _extends(inputs, stored.n_rows, stored.input_version):
        return f"the stored {what} changed (the new {what} do not extend them)"
    if stored.state is None:
        return "no append state for the stored version"
    return ""


def _load_state(stored: Stored, parse: Callable[[dict], object], n_rows: Callable[[object], int]):
    """The parsed state, or None when it is unreadable or for another row count."""
    try:
        state = parse(stored.state)
    except (ValueError, KeyError, TypeError):
        return None
    return state if n_rows(state) == stored.n_rows else None


def _compact(state) -> dict:
    """The state to store: without the bars' tail, which the stored input holds (a few hundred bytes)."""
    return state.to_dict(with_tail=False) if hasattr(state, "tail") else state.to_dict()


def _update(stored, reason, state, step, empty, inputs: pd.DataFrame) -> Update:
    t0 = time.perf_counter()
    if state is None:
        table, new_state = step(empty, inputs)
        return Update(table, _compact(new_state), "full", 0, time.perf_counter() - t0, reason)
    new = inputs.iloc[stored.n_rows :]
    table = stored.load()
    if len(new):
        rows, state = step(state, new)
        table = pd.concat([table, rows], ignore_index=True)
    return Update(table, _compact(state), "incremental", len(new), time.perf_counter() - t0)


def update_features(bars: pd.DataFrame, stored: Stored | None, code: str) -> Update:
    """The feature table of ``bars``: continued from ``stored`` when possible, else in full."""
    reason = _why_full(stored, code, bars, "bars")
    parse = lambda d: FeatureState.from_dict(d, bars)  # noqa: E731 - the tail from the stored bars
    state = None if reason else _load_state(stored, parse, lambda s: s.n_bars)
    if not reason and state is None:
        reason = "the append state does not match the stored version"
    return _update(stored, reason, state, append_features, FeatureState(), bars)


def update_regimes(
    bars: pd.DataFrame, stored: Stored | None, code: str, timeframe: str, params: RegimeParams
) -> Update:
    """The regime table of ``bars``: continued from ``stored`` when possible, else in full."""
    reason = _why_full(stored, code, bars, "bars")
    parse = lambda d: RegimeState.from_dict(d, bars)  # noqa: E731
    state = None if reason else _load_state(stored, parse, lambda s: s.n_bars)
    if state is not None and (state.timeframe != timeframe or state.params != params):
        state = None
    if not reason and state is None:
        reason = "the append state does not match the stored version"
    return _update(stored, reason, state, append_regimes, RegimeState.empty(timeframe, params), bars)


@dataclass
class _Filter:
    """The EKF as an append step: its state after ``n_rows`` feature rows."""

    params: EKFParams
    n_rows: int = 0
    ekf: EKFState | None = None

    def to_dict(self) -> dict:
        return {"ekf_params": self.params.to_dict(), "n_rows": self.n_rows, "ekf": self.ekf.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> _Filter:
        return cls(EKFParams.from_dict(d["ekf_params"]), int(d["n_rows"]), EKFState.from_dict(d["ekf"]))


def _filter_step(state: _Filter, rows: pd.DataFrame) -> tuple[pd.DataFrame, _Filter]:
    den, ekf = denoise_features_with_state(rows, state.params, state.ekf)
    return den, _Filter(state.params, state.n_rows + len(rows), ekf)


def update_denoised(features: pd.DataFrame, stored: Stored | None, code: str, params: EKFParams) -> Update:
    """The EKF-denoised table of ``features``: the filter continued from ``stored``'s state when
    the feature rows extend its input, else run in full."""
    reason = _why_full(stored, code, features, "features")
    state = None if reason else _load_state(stored, _Filter.from_dict, lambda s: s.n_rows)
    if state is not None and state.params.to_dict() != params.to_dict():
        state, reason = None, "no EKF state for these parameters"
    if not reason and state is None:
        reason = "the append state does not match the stored version"
    return _update(stored, reason, state, _filter_step, _Filter(params), features)


__all__ = ["Stored", "Update", "update_denoised", "update_features", "update_regimes"]
