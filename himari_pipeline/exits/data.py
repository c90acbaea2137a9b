"""The bars and segments an exit optimizer works on, and the entries it is given.

:class:`ExitData` is one dataset's bars (open, high, low, close; one row per bar close) with the row
ranges of the pipeline's segments (train, val, test, live). From the lake it comes from
``raw_ohlcv`` and ``dataset_splits`` (:func:`data_from_splits`: each segment is the run of bars whose
close times are the split's, so the splits' warm-up and embargo carry over unchanged); the built-in
markets come from :func:`synthetic_data` with the same split planner. :class:`EntryRule` makes the
entries (the breakout rule shipped with the project) and :meth:`ExitData.segment_entries` splits them
(only entries whose whole ``max_hold`` window lies inside their segment).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from himari_pipeline.datasets.layout import SplitConfig, plan_splits
from himari_pipeline.exits.configs import EntryRule as EntryRule  # noqa: F401 - re-exported
from himari_pipeline.exits.entries import split_entries

SEGMENTS = ("train", "val", "test", "live")
BAR_COLUMNS = ("open", "high", "low", "close")


@dataclass
class ExitData:
    """Bars (RangeIndex rows), their close times (int64 ns UTC) and the segments' ``[lo, hi)`` rows."""

    name: str
    bars: pd.DataFrame
    timestamps: np.ndarray
    ranges: dict[str, tuple[int, int]]
    bars_per_year: float

    @property
    def bounds(self) -> dict[str, tuple[str, str]]:
        ts = pd.DatetimeIndex(pd.to_datetime(self.timestamps, utc=True))
        return {s: (ts[lo].isoformat(), ts[hi - 1].isoformat()) for s, (lo, hi) in self.ranges.items()}

    def segment_entries(self, entries: pd.DataFrame, max_hold: int) -> dict[str, pd.DataFrame]:
        return split_entries(entries, self.ranges, max_hold)

    def market(self, entries: pd.DataFrame):
        """The :class:`~himari_pipeline.exits.env.ExitMarket` of these bars and ``entries`` (torch)."""
        from himari_pipeline.exits.env import ExitMarket

        return ExitMarket.from_numpy(self.bars, entries["entry_bar"], entries["side"])

    def years(self, segment: str) -> float:
        lo, hi = self.ranges[segment]
        return (hi - lo) / self.bars_per_year


def _bars(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    ts = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True)).asi8
    return frame[list(BAR_COLUMNS)].astype(np.float64).reset_index(drop=True), ts


def data_from_splits(name: str, bars: pd.DataFrame, splits, bars_per_year: float) -> ExitData:
    """``bars``: the lake's ``raw_ohlcv`` (timestamp = bar close); ``splits``: its ``DatasetSplits``."""
    ohlc, ts = _bars(bars)
    ranges = {}
    for seg in SEGMENTS:
        seg_ts = np.asarray(splits[seg].timestamps, dtype=np.int64)
        lo = int(np.searchsorted(ts, seg_ts[0]))
        hi = lo + len(seg_ts)
        if hi > len(ts) or not np.array_equal(ts[lo:hi], seg_ts):
            raise ValueError(f"{name}: the {seg} split's bars are not a run of the dataset's bars")
        ranges[seg] = (lo, hi)
    return ExitData(name, ohlc, ts, ranges, float(bars_per_year))


def data_from_bars(name: str, bars: pd.DataFrame, bars_per_year: float, warmup: int = 200) -> ExitData:
    """Any bars (``timestamp`` = bar close, open, high, low, close) with the pipeline's default split
    plan (60/20/20 and the live segment), for bars not in the lake."""
    ohlc, ts = _bars(bars)
    plan = plan_splits(ts, warmup, SplitConfig())
    return ExitData(name, ohlc, ts, {s: plan.ranges[s] for s in SEGMENTS}, float(bars_per_year))


def synthetic_data(
    variant: str = "planted", seed: int = 7, timeframe: str = "1h", warmup: int = 200
) -> ExitData:
    """A built-in synthetic market with the pipeline's default split plan (60/20/20 and the live year)."""
    from himari_pipeline.market.calendars import CALENDAR_24_7, bars_per_year
    from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars

    bars = generate_synthetic_bars(SyntheticConfig(seed=seed, variant=variant, timeframe=timeframe))
    name = f"SYNTH-{variant.upper()}_{timeframe} (seed {seed})"
    return data_from_bars(name, bars, bars_per_year(CALENDAR_24_7, timeframe), warmup)
