"""Positions for a pair: the z-score mean-reversion rule and the baselines' legs.

Spread positions are in ``{-1, 0, +1}`` (times the rules' leverage): ``+1`` is long the spread (long
``y``, short ``beta`` of ``x``, :func:`~himari_pipeline.pairs.spread.leg_weights`).
"""

from __future__ import annotations

import numba
import numpy as np

from himari_pipeline.evaluation.backtest import Legs


@numba.njit(cache=True)
def _mean_reversion(z, entry, exit_, out):  # pragma: no cover - jit
    pos = 0.0
    for t in range(len(z)):
        zt = z[t]
        if np.isnan(zt):
            pos = 0.0
        elif pos == 0.0:
            if zt >= entry:
                pos = -1.0
            elif zt <= -entry:
                pos = 1.0
        elif (pos > 0 and zt >= -exit_) or (pos < 0 and zt <= exit_):
            pos = 0.0
            if zt >= entry:
                pos = -1.0
            elif zt <= -entry:
                pos = 1.0
        out[t] = pos


def zscore_positions(zscore: np.ndarray, entry: float = 2.0, exit: float = 0.5) -> np.ndarray:  # noqa: A002
    """Mean reversion: short the spread when ``z >= entry``, long when ``z <= -entry``; close a long
    once ``z >= -exit`` (a short once ``z <= exit``); flat where ``z`` is NaN. Decided at each close
    from ``z`` at that close only."""
    if not entry > exit:
        raise ValueError(f"entry {entry} must be above exit {exit}")
    z = np.ascontiguousarray(zscore, dtype=np.float64)
    out = np.zeros_like(z)
    _mean_reversion(z, float(entry), float(exit), out)
    return out


def buy_and_hold_legs(returns: np.ndarray, names: tuple[str, ...]) -> Legs:
    """Every leg bought with an equal share of the account and rebalanced each bar (a position of 1)."""
    k = returns.shape[1]
    return Legs(returns, np.full(returns.shape, 1.0 / k), names)
