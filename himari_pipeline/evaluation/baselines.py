"""Simple baseline policies, shown beside every policy net of the same costs.

All position series follow the backtest convention: ``positions[i]`` is decided at bar ``i``'s close
from closes ``<= i`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from himari_pipeline.evaluation.backtest import BacktestResult, backtest
from himari_pipeline.evaluation.metrics import compute_stats
from himari_pipeline.trading.rules import TradingRules

#: The policy and its baselines, in the order every report shows them.
SUBJECTS: tuple[str, ...] = ("policy", "buy_and_hold", "flat", "ma_crossover", "random_same_turnover")


def buy_and_hold_positions(n: int) -> np.ndarray:
    """Fully long at every bar."""
    return np.ones(n)


def flat_positions(n: int) -> np.ndarray:
    """Out of the market at every bar."""
    return np.zeros(n)


def ma_crossover_positions(
    prices: np.ndarray, fast: int = 50, slow: int = 200, allow_short: bool = True
) -> np.ndarray:
    """Long when the trailing ``fast`` mean of closes is above the ``slow`` one, else short (or flat).

    Both means use closes ``<= i`` (trailing windows, no centring); flat during the warm-up.
    """
    if not 0 < fast < slow:
        raise ValueError(f"need 0 < fast < slow, got fast={fast}, slow={slow}")
    p = pd.Series(np.asarray(prices, dtype=np.float64))
    f = p.rolling(fast, min_periods=fast).mean().to_numpy()
    s = p.rolling(slow, min_periods=slow).mean().to_numpy()
    out = np.where(f > s, 1.0, -1.0 if allow_short else 0.0)
    out[np.isnan(s)] = 0.0
    return out


def random_positions_like(positions: np.ndarray, seed: int = 0) -> np.ndarray:
    """A random policy with the same number of position changes and the same position levels.

    Change points are drawn uniformly without replacement; each new level is drawn from the given
    series' empirical level distribution, excluding the current level, so the turnover matches in
    expectation (and exactly for two levels).
    """
    pos = np.asarray(positions, dtype=np.float64)
    n = len(pos)
    rng = np.random.default_rng(seed)
    prev = np.r_[0.0, pos[:-1]]
    n_changes = int(np.count_nonzero(pos != prev))
    levels, counts = np.unique(pos, return_counts=True)
    probs = counts / counts.sum()
    out = np.zeros(n)
    if n_changes == 0 or n == 0:
        return out
    change_at = np.sort(rng.choice(n, size=n_changes, replace=False))
    draws = rng.random(n_changes)
    values = np.empty(n_changes)
    current = 0.0
    for j in range(n_changes):
        p = np.where(levels == current, 0.0, probs)
        if p.sum() == 0:  # only one level and it equals the current one
            values[j] = current
            continue
        cdf = np.cumsum(p / p.sum())
        current = float(levels[min(np.searchsorted(cdf, draws[j], side="right"), len(levels) - 1)])
        values[j] = current
    seg = np.searchsorted(change_at, np.arange(n), side="right") - 1
    out = np.where(seg >= 0, values[np.maximum(seg, 0)], 0.0)
    return out


def baseline_positions(
    prices: np.ndarray, policy_positions: np.ndarray, seed: int = 0, fast: int = 50, slow: int = 200
) -> dict[str, np.ndarray]:
    """Every baseline's positions over the bars of ``policy_positions``.

    ``prices`` may be longer than the positions: its leading bars are history the moving averages
    see (the positions cover its last ``len(policy_positions)`` bars).
    """
    n = len(policy_positions)
    if len(prices) < n:
        raise ValueError(f"{len(prices)} prices for {n} positions")
    return {
        "buy_and_hold": buy_and_hold_positions(n),
        "flat": flat_positions(n),
        "ma_crossover": ma_crossover_positions(prices, fast, slow)[len(prices) - n :],
        "random_same_turnover": random_positions_like(policy_positions, seed),
    }


def subject_backtests(
    prices: np.ndarray,
    returns: np.ndarray,
    policy_positions: np.ndarray,
    costs: TradingRules | None,
    bars_per_year: float,
    seed: int = 0,
    fast: int = 50,
    slow: int = 200,
    gap_before: np.ndarray | None = None,
) -> dict[str, BacktestResult]:
    """Backtests of the policy and of each baseline (in :data:`SUBJECTS` order), net of the same costs.

    ``returns``, ``policy_positions`` and ``gap_before`` (bars missing before each bar; None = none)
    cover the same bars; ``prices`` may start earlier (see :func:`baseline_positions`).
    """
    runs = {"policy": np.asarray(policy_positions, dtype=np.float64)}
    runs.update(baseline_positions(prices, policy_positions, seed, fast, slow))
    return {
        name: backtest(runs[name], returns, costs, bars_per_year, gap_before=gap_before) for name in SUBJECTS
    }


def baseline_table(
    prices: np.ndarray,
    returns: np.ndarray,
    policy_positions: np.ndarray,
    costs: TradingRules | None,
    bars_per_year: float,
    seed: int = 0,
    timestamps: Sequence | pd.DatetimeIndex | None = None,
    fast: int = 50,
    slow: int = 200,
) -> pd.DataFrame:
    """``compute_stats`` rows for the policy and each baseline, all net of the same ``costs``."""
    results = subject_backtests(prices, returns, policy_positions, costs, bars_per_year, seed, fast, slow)
    rows = {name: compute_stats(res, bars_per_year, timestamps) for name, res in results.items()}
    return pd.DataFrame.from_dict(rows, orient="index")
