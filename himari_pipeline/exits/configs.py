"""The exit optimizer's configuration, free of torch: the env's rules (:class:`ExitConfig`) and the
entry rule (:class:`EntryRule`). Experiments and the Dagster definitions read them without importing
torch; :mod:`.env` and :mod:`.data` re-export them next to the code that uses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.exits.entries import breakout_entries, entries_from_positions, read_entries
from himari_pipeline.trading.rules import TradingRules


@dataclass(frozen=True)
class ExitConfig:
    """Stops, masks, holding limit, costs and reward terms of the exit env."""

    stop_loss: float = 0.01  # initial stop, as a fraction of the entry price
    take_profit: float = 0.02
    min_exit_bar: int = 3
    max_hold: int = 48
    tighten_frac: float = 0.5
    partial_frac: float = 0.5
    transaction_cost: float = 0.0005  # per unit of traded notional, each fill
    time_coef: float = 0.0
    regret_coef: float = 0.0
    reward_scale: float = 100.0  # rewards in percent of the entry notional (PPO's value fit likes O(1))
    window: int = 16  # bars of returns in the observation
    # trailing trend scores in the observation (mean return over its standard error, per window)
    trend_windows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not (0 < self.stop_loss < 1 and self.take_profit > 0):
            raise ValueError("need 0 < stop_loss < 1 and take_profit > 0")
        if not (0 <= self.min_exit_bar < self.max_hold):
            raise ValueError("need 0 <= min_exit_bar < max_hold")
        if not (0 < self.tighten_frac < 1 and 0 < self.partial_frac < 1):
            raise ValueError("tighten_frac and partial_frac must lie in (0, 1)")
        if self.window < 1:
            raise ValueError("window must be >= 1")
        object.__setattr__(self, "trend_windows", tuple(int(w) for w in self.trend_windows))
        if any(w < 2 for w in self.trend_windows):
            raise ValueError("trend_windows must be >= 2 bars each")
        if not self.reward_scale > 0:
            raise ValueError("reward_scale must be > 0")
        TradingRules(transaction_cost=self.transaction_cost)  # validates the cost

    @property
    def n_obs(self) -> int:
        return self.window + 7 + len(self.trend_windows)


ENTRY_RULES = ("breakout", "file", "positions")


@dataclass(frozen=True)
class EntryRule:
    """Where the entries come from.

    - ``breakout``: the rule shipped with the project
      (:func:`~himari_pipeline.exits.entries.breakout_entries`, ``lookback``, ``min_gap``);
    - ``file``: a user's ``timestamp,side`` file at ``path`` (CSV or Parquet; bar close UTC; side
      1/-1/long/short; :func:`~himari_pipeline.exits.entries.read_entries`);
    - ``positions``: a strategy's or trained policy's ``timestamp,position`` file at ``path`` (the
      format of ``himari evaluate``): an entry wherever a position opens or flips side.

    A relative ``path`` is relative to the project root. A bad file is refused with its name, row
    and rule."""

    rule: str = "breakout"
    lookback: int = 48
    min_gap: int = 24
    path: str = ""

    def __post_init__(self) -> None:
        if self.rule not in ENTRY_RULES:
            raise ValueError(f"unknown entry rule {self.rule!r}; choose one of {', '.join(ENTRY_RULES)}")
        if self.lookback < 1 or self.min_gap < 0:
            raise ValueError("need lookback >= 1 and min_gap >= 0")
        if (self.rule == "breakout") == bool(self.path):
            raise ValueError("entries: `path` is needed by the file and positions rules, and only by them")

    def resolved_path(self) -> Path:
        from himari_pipeline.config import PROJECT_ROOT

        p = Path(self.path)
        return p if p.is_absolute() else PROJECT_ROOT / p

    def entries(self, bars: pd.DataFrame, timestamps: np.ndarray | None = None) -> pd.DataFrame:
        """``entry_bar`` and ``side`` on ``bars`` (``timestamps``: their close times, int64 ns, for files)."""
        if self.rule == "breakout":
            return breakout_entries(bars["high"], bars["low"], bars["close"], self.lookback, self.min_gap)
        if timestamps is None:
            raise ValueError(f"the {self.rule} entry rule needs the bars' timestamps")
        if self.rule == "file":
            return read_entries(self.resolved_path(), timestamps)
        return entries_from_positions(position_series(self.resolved_path(), timestamps))

    def to_dict(self) -> dict:
        return asdict(self)


def position_series(path: Path, timestamps: np.ndarray) -> np.ndarray:
    """A positions file (``himari evaluate``'s format) as one position per bar (0 where absent)."""
    from himari_pipeline.evaluation.strategy import PositionsError, read_positions
    from himari_pipeline.evaluation.timestamped import rule_error

    frame = read_positions(path)
    ts = np.asarray(timestamps, dtype=np.int64)
    ns = frame["timestamp"].to_numpy(np.int64)
    at = np.searchsorted(ts, ns)
    bad = np.flatnonzero((at >= len(ts)) | (ts[np.minimum(at, len(ts) - 1)] != ns))
    if len(bad):
        when = pd.Timestamp(ns[bad[0]], tz="UTC")
        row = int(frame["row"].iloc[bad[0]]) if "row" in frame else int(bad[0]) + 1
        raise rule_error(
            PositionsError, path, row, "unknown_timestamp", f"{when} is not a bar close of the dataset"
        )
    out = np.zeros(len(ts))
    out[at] = frame["position"].to_numpy(np.float64)
    return out
