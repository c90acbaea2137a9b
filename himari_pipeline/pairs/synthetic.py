"""Synthetic pairs with a known answer: a cointegrated pair with a planted mean-reverting spread, and
two independent random walks (no spread to trade).

Planted: ``log x`` is a random walk of volatility ``vol`` per bar (or a real leg's log closes:
:func:`partner_of`); the spread ``s`` is an Ornstein-Uhlenbeck process with half-life
``half_life`` bars and stationary std ``spread_vol``; and ``log y = beta log x + alpha + s``. Null:
``log y`` is a second, independent random walk of the same volatility. Bars: ``calendar``'s 1d sessions.
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


def _partner_log(log_x: np.ndarray, cfg: SyntheticPair, rng: np.random.Generator) -> np.ndarray:
    n = len(log_x)
    if not cfg.planted:
        return np.log(50.0) + np.cumsum(rng.normal(0.0, cfg.vol, n))
    phi = np.exp(-np.log(2.0) / cfg.half_life)
    eps = rng.normal(0.0, cfg.spread_vol * np.sqrt(1.0 - phi**2), n)
    s = np.empty(n)
    s[0] = rng.normal(0.0, cfg.spread_vol)
    for t in range(1, n):
        s[t] = phi * s[t - 1] + eps[t]
    return cfg.beta * log_x + cfg.alpha + s


def partner_of(closes: pd.Series, cfg: SyntheticPair = SyntheticPair()) -> pd.Series:
    """A synthetic partner ``y`` of a real leg's closes ``x`` (same bars): cointegrated with it through
    the planted spread, or an independent random walk (``cfg.planted=False``)."""
    x = np.log(closes.to_numpy(np.float64))
    return pd.Series(np.exp(_partner_log(x, cfg, np.random.default_rng(cfg.seed))), index=closes.index)


def synthetic_pair(cfg: SyntheticPair = SyntheticPair()) -> AlignedLegs:
    """Two legs ``Y`` and ``X`` aligned on the calendar's daily sessions (no missing bars)."""
    start, end = pd.Timestamp(cfg.start, tz="UTC"), pd.Timestamp(cfg.end, tz="UTC")
    index = pd.DatetimeIndex(expected_closes(cfg.calendar, "1d", start, end))
    rng = np.random.default_rng(cfg.seed)
    log_x = np.log(50.0) + np.cumsum(rng.normal(0.0, cfg.vol, len(index)))
    legs = {
        "Y": pd.Series(np.exp(_partner_log(log_x, cfg, rng)), index=index),
        "X": pd.Series(np.exp(log_x), index=index),
    }
    return align_legs(legs, pair_bars_per_year("1d", cfg.calendar))
