"""Continue the regime table with new bars, bit-identical to the full computation.

:func:`append_regimes` recomputes the indicators on the stored tail plus the new bars (ADX's EWMs
resumed from their stored states, :mod:`himari_pipeline.bar_tail`) and continues the state machine
from the held label and the bars it has been held. ``append_regimes(RegimeState.empty(tf), bars)``
*is* :func:`~himari_pipeline.regimes.detect.detect_regimes`.
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
from himari_pipeline.market.bars import timeframe_delta
from himari_pipeline.regimes.detect import (
    RegimeParams,
    compute_indicators_resumable,
    label_regimes,
    regime_lookback,
)
from himari_pipeline.vocabulary import WARMUP_ID

STATE_VERSION: int = 2
TAIL_COLUMNS: tuple[str, ...] = ("timestamp", "high", "low", "close")  # what the indicators read


@dataclass
class RegimeState:
    """The regime table after ``n_bars`` bars: the last bars (``TAIL_COLUMNS``), ADX's EWM states
    just before global row ``ewm_start``, and the state machine (``label`` held ``held`` bars)."""

    timeframe: str
    params: RegimeParams = field(default_factory=RegimeParams)
    n_bars: int = 0
    tail: pd.DataFrame = field(default_factory=lambda: empty_tail(TAIL_COLUMNS))
    ewm_start: int = 0
    ewm: dict[str, list[float]] | None = None
    label: int = WARMUP_ID
    held: int = 0

    @classmethod
    def empty(cls, timeframe: str, params: RegimeParams | None = None) -> RegimeState:
        timeframe_delta(timeframe)  # a known timeframe
        return cls(timeframe, params or RegimeParams())

    @property
    def tail_length(self) -> int:
        return regime_lookback(self.timeframe, self.params) + EWM_MARGIN

    @property
    def last_timestamp(self) -> pd.Timestamp | None:
        return None if self.tail.empty else pd.Timestamp(self.tail["timestamp"].iloc[-1])

    def to_dict(self, with_tail: bool = True) -> dict:
        """JSON-ready and exact; without the tail (see ``FeatureState.to_dict``) a few hundred bytes."""
        return {
            "version": STATE_VERSION,
            "timeframe": self.timeframe,
            "params": self.params.to_dict(),
            "n_bars": self.n_bars,
            **({"tail": tail_to_dict(self.tail)} if with_tail else {}),
            "ewm_start": self.ewm_start,
            "ewm": nan_to_none(self.ewm),
            "label": self.label,
            "held": self.held,
        }

    @classmethod
    def from_dict(cls, d: dict, bars: pd.DataFrame | None = None) -> RegimeState:
        """The state of :meth:`to_dict`; one stored without its tail takes it from ``bars``."""
        if d.get("version") != STATE_VERSION:
            raise ValueError(
                f"RegimeState: unsupported version {d.get('version')!r}; expected {STATE_VERSION}"
            )
        timeframe, params, n = d["timeframe"], RegimeParams.from_dict(d["params"]), int(d["n_bars"])
        if "tail" in d:
            tail = tail_from_dict(d["tail"])
        else:
            tail = tail_of(bars, n, regime_lookback(timeframe, params) + EWM_MARGIN, TAIL_COLUMNS)
        return cls(
            timeframe=timeframe,
            params=params,
            n_bars=n,
            tail=tail,
            ewm_start=int(d["ewm_start"]),
            ewm=none_to_nan(d["ewm"]),
            label=int(d["label"]),
            held=int(d["held"]),
        )


def append_regimes(state: RegimeState, new_bars: pd.DataFrame) -> tuple[pd.DataFrame, RegimeState]:
    """The regime rows of ``new_bars`` (after the stored ones) and the state after them."""
    new = check_new_bars(state.last_timestamp, new_bars)
    n_old, n_total = state.n_bars, state.n_bars + len(new)
    combined = extend_tail(state.tail, new)
    tail0 = n_old - len(state.tail)
    first, nxt = resume_window(n_old, n_total, state.ewm_start, state.tail_length)
    ind, ewm = compute_indicators_resumable(
        combined.iloc[first - tail0 :].reset_index(drop=True),
        state.timeframe,
        state.params,
        state.ewm,
        start=state.ewm_start - first,
        snapshot=nxt - first,
    )
    rows, label, held = label_regimes(ind.iloc[n_old - first :], state.params, state.label, state.held)
    tail = combined.iloc[max(len(combined) - state.tail_length, 0) :].reset_index(drop=True)
    after = RegimeState(
        state.timeframe, state.params, n_total, tail, nxt, ewm if nxt > 0 else None, label, held
    )
    return rows, after
