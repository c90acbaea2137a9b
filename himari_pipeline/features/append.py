"""Continue the feature table with new bars, bit-identical to the full computation.

:func:`append_features` recomputes the windowed quantities on the stored tail plus the new bars and
resumes the EWMs from their stored states (:mod:`himari_pipeline.bar_tail`).
``append_features(FeatureState(), bars)`` *is* the full computation, so the first state is made by
the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from himari_pipeline.bar_tail import (
    EWM_MARGIN,
    check_new_bars,
    empty_tail,
    extend_tail,
    nan_to_none,
    none_to_nan,
    resume_window,
    tail_from_dict,
    tail_of,
    tail_to_dict,
)
from himari_pipeline.features.compute import FEATURE_LOOKBACK, compute_features_resumable
from himari_pipeline.market.bars import BAR_COLUMNS

STATE_VERSION: int = 2
#: Bars kept in the tail: the longest feature lookback plus the EWM margin.
TAIL_LENGTH: int = FEATURE_LOOKBACK + EWM_MARGIN


@dataclass
class FeatureState:
    """The feature table after ``n_bars`` bars: the last ``TAIL_LENGTH`` bars and the EWM states
    just before global row ``ewm_start`` (None while it is 0: the EWMs then start at the first bar)."""

    n_bars: int = 0
    tail: pd.DataFrame = field(default_factory=empty_tail)
    ewm_start: int = 0
    ewm: dict[str, list[float]] | None = None

    @property
    def last_timestamp(self) -> pd.Timestamp | None:
        return None if self.tail.empty else pd.Timestamp(self.tail["timestamp"].iloc[-1])

    def to_dict(self, with_tail: bool = True) -> dict:
        """JSON-ready and exact (bars as base64 bytes, EWM states as full-precision floats). Without
        the tail it is a few hundred bytes: the tail is then the stored bars' last rows (see
        :meth:`from_dict`)."""
        out = {"version": STATE_VERSION, "n_bars": self.n_bars}
        if with_tail:
            out["tail"] = tail_to_dict(self.tail)
        return {**out, "ewm_start": self.ewm_start, "ewm": nan_to_none(self.ewm)}

    @classmethod
    def from_dict(cls, d: dict, bars: pd.DataFrame | None = None) -> FeatureState:
        """The state of :meth:`to_dict`; a state stored without its tail takes it from ``bars``, the
        bars it was computed from (the last ``TAIL_LENGTH`` of its ``n_bars``)."""
        if d.get("version") != STATE_VERSION:
            raise ValueError(
                f"FeatureState: unsupported version {d.get('version')!r}; expected {STATE_VERSION}"
            )
        n = int(d["n_bars"])
        tail = tail_from_dict(d["tail"]) if "tail" in d else tail_of(bars, n, TAIL_LENGTH, BAR_COLUMNS)
        return cls(n, tail, int(d["ewm_start"]), none_to_nan(d["ewm"]))


def append_features(state: FeatureState, new_bars: pd.DataFrame) -> tuple[pd.DataFrame, FeatureState]:
    """The feature rows of ``new_bars`` (after the stored ones) and the state after them.

    The rows equal :func:`~himari_pipeline.features.compute.compute_features`' rows for the same
    bars bit for bit; ``state`` is not modified.
    """
    new = check_new_bars(state.last_timestamp, new_bars)
    n_old, n_total = state.n_bars, state.n_bars + len(new)
    combined = extend_tail(state.tail, new)
    tail0 = n_old - len(state.tail)  # global index of the stored tail's first bar
    first, nxt = resume_window(n_old, n_total, state.ewm_start, TAIL_LENGTH)
    feats, ewm = compute_features_resumable(
        combined.iloc[first - tail0 :].reset_index(drop=True),
        state.ewm,
        start=state.ewm_start - first,
        snapshot=nxt - first,
        row_offset=first,
    )
    rows = feats.iloc[n_old - first :].reset_index(drop=True)
    tail = combined.iloc[max(len(combined) - TAIL_LENGTH, 0) :].reset_index(drop=True)
    return rows, FeatureState(n_total, tail, nxt, ewm if nxt > 0 else None)
