"""Synthetic pairs with a known answer: a cointegrated pair with a planted mean-reverting spread, and
two independent random walks (no spread to trade).

Planted: ``log x`` is a random walk (daily volatility ``vol``); the spread ``s`` is an
Ornstein-Uhlenbeck process with half-life ``half_life`` bars and stationary std ``spread_vol``; and
``log y = beta log x + alpha + s``. Null: ``log y`` is a second, independent random walk of the same
volatility. Bars are the sessions of ``calendar`` at 1d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from himari_pipeline.market.calendars import expected_closes
from himari_pipeline.pairs.legs import AlignedLegs, align_legs, pair_bars_per_year


@dataclass(frozen=True)
class SyntheticPair:
    """How the pair is drawn."""

    planted: bool = True
    seed: int = 0
    start: str = "2012-01-01"
    end: str = "2024-12-31"
    calendar: str = "XNYS"
    vol: float = 0.015  # per bar, log returns of x (and of y in the null)
    beta: float = 1.2
    alpha: float = 0.3
    half_life: float = 5.0  # bars
    spread_vol: float = 0.05  # stationary std of the spread


def synthetic_pair(cfg: SyntheticPair = SyntheticPair()) -> AlignedLegs:
    """Two legs ``Y`` and ``X`` aligned on the calendar's daily sessions (no missing bars)."""
    closes_at = expected_closes(
        cfg.calendar, "1d", pd.Timestamp(cfg.start, tz="UTC"), pd.Timestamp(cfg.end, tz="UTC")
    )
    n = len(closes_at)
    rng = np.random.default_rng(cfg.seed)
    log_x = np.log(50.0) + np.cumsum(rng.normal(0.0, cfg.vol, n))
    if cfg.planted:
        phi = np.exp(-np.log(2.0) / cfg.half_life)
        eps = rng.normal(0.0, cfg.spread_vol * np.sqrt(1.0 - phi**2), n)
        s = np.empty(n)
        s[0] = rng.normal(0.0, cfg.spread_vol)
        for t in range(1, n):
            s[t] = phi * s[t - 1] + eps[t]
        log_y = cfg.beta * log_x + cfg.alpha + s
    else:
        log_y = np.log(50.0) + np.cumsum(rng.normal(0.0, cfg.vol, n))
    index = pd.DatetimeIndex(closes_at)
    legs = {"Y": pd.Series(np.exp(log_y), index=index), "X": pd.Series(np.exp(log_x), index=index)}
    return align_legs(legs, pair_bars_per_year("1d", cfg.calendar))
