"""The exit optimizer's configuration, free of torch: the env's rules (:class:`ExitConfig`) and the
entry rule (:class:`EntryRule`). Experiments and the Dagster definitions read them without importing
torch; :mod:`.env` and :mod:`.data` re-export them next to the code that uses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from himari_pipeline.exits.entries import breakout_entries
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


@dataclass(frozen=True)
class EntryRule:
    """The entry rule: ``breakout`` (:func:`~himari_pipeline.exits.entries.breakout_entries`)."""

    rule: str = "breakout"
    lookback: int = 48
    min_gap: int = 24

    def __post_init__(self) -> None:
        if self.rule != "breakout":
            raise ValueError(f"unknown entry rule {self.rule!r}; the project ships 'breakout'")
        if self.lookback < 1 or self.min_gap < 0:
            raise ValueError("need lookback >= 1 and min_gap >= 0")

    def entries(self, bars: pd.DataFrame) -> pd.DataFrame:
        return breakout_entries(bars["high"], bars["low"], bars["close"], self.lookback, self.min_gap)

    def to_dict(self) -> dict:
        return asdict(self)
