"""Vectorized position backtest with the pipeline's causal convention and cost model.

Convention (DESIGN.md, same as :mod:`himari_pipeline.rl.env`): ``positions[i]`` is decided at bar
``i``'s close and held during bar ``i+1``, earning ``returns[i+1]`` with
``returns[i] = close[i]/close[i-1] - 1`` (``returns[0]`` is never used and may be NaN). Step ``i``
(``i = 0 .. n-2``) goes from close ``i`` to close ``i+1``::

    exposure[i] = leverage * positions[i]
    net[i]      = exposure[i] * returns[i+1]
                  - transaction_cost * |exposure[i] - exposure[i-1]|     (exposure[-1] = 0)
                  - carry_cost * |exposure[i]|
                  - borrow_rate_annual / bars_per_year * max(-exposure[i], 0)
    equity[i+1] = equity[i] * (1 + net[i]),  equity[0] = initial

so ``equity`` has one value per bar close and ``net`` one per step. The position decided at the
last bar earns nothing (there is no next return). Equity is floored at 0: at the first step with
``1 + net <= 0`` (or equity at or below ``ruin_fraction * initial``) the account is ruined, that
step's return is -1, and every later step returns 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CostModel:
    """Costs as fractions of equity. ``0.0015`` = 0.15 % per unit of position change."""

    transaction_cost: float = 0.0015  # per unit of |exposure change|, charged at the decision
    carry_cost: float = 0.0  # per bar, per unit of |exposure| held
    borrow_rate_annual: float = 0.0  # per year, per unit of short exposure
    leverage: float = 1.0  # exposure = leverage * position
    max_leverage: float = 5.0  # |exposure| above this is rejected

    def __post_init__(self) -> None:
        for name in ("transaction_cost", "carry_cost", "borrow_rate_annual"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if not 0 < self.max_leverage < math.inf:
            raise ValueError(f"max_leverage must be finite and > 0, got {self.max_leverage}")
        if not 0 < self.leverage <= self.max_leverage:
            raise ValueError(
                f"leverage must be in (0, max_leverage={self.max_leverage}], got {self.leverage}"
            )

    def borrow_per_bar(self, bars_per_year: float) -> float:
        return self.borrow_rate_annual / bars_per_year


@dataclass
class BacktestResult:
    """Per-step arrays (length ``n-1``) and the equity curve (length ``n``, one value per close)."""

    positions: np.ndarray  # (n,) as given (decided at each close)
    exposure: np.ndarray  # (n-1,) leverage * positions[:-1], the exposure held in each step
    gross_returns: np.ndarray  # (n-1,) exposure * returns[1:]
    transaction_costs: np.ndarray  # (n-1,)
    carry_costs: np.ndarray  # (n-1,)
    borrow_costs: np.ndarray  # (n-1,)
    net_returns: np.ndarray  # (n-1,) after costs, -1 at the ruin step, 0 after it
    equity: np.ndarray  # (n,) equity[0] = initial
    initial: float
    bars_per_year: float
    ruined: bool
    ruin_bar: int | None  # bar index whose close found the equity at 0
    trades: pd.DataFrame
    raw_net_returns: np.ndarray  # (n-1,) net returns without the ruin floor (for significance tests)

    @property
    def costs(self) -> np.ndarray:
        return self.transaction_costs + self.carry_costs + self.borrow_costs

    @property
    def final_value(self) -> float:
        return float(self.equity[-1])

    @property
    def n_steps(self) -> int:
        return len(self.net_returns)


def _validate(positions: np.ndarray, returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(positions, dtype=np.float64)
    ret = np.asarray(returns, dtype=np.float64)
    if pos.ndim != 1 or ret.shape != pos.shape:
        raise ValueError(f"positions {pos.shape} and returns {ret.shape} must be 1-D of equal length")
    if len(pos) < 2:
        raise ValueError("need at least 2 bars")
    if not np.isfinite(pos).all():
        raise ValueError(f"positions contain non-finite values at {np.flatnonzero(~np.isfinite(pos))[:5]}")
    bad = ~np.isfinite(ret[1:])
    if bad.any():
        raise ValueError(f"returns contain non-finite values at bars {np.flatnonzero(bad)[:5] + 1}")
    return pos, ret


def step_costs(
    exposure: np.ndarray, costs: CostModel, bars_per_year: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transaction, carry and borrow cost per step for an exposure series (first change from 0)."""
    prev = np.empty_like(exposure)
    prev[0] = 0.0
    prev[1:] = exposure[:-1]
    tx = costs.transaction_cost * np.abs(exposure - prev)
    carry = costs.carry_cost * np.abs(exposure)
    borrow = costs.borrow_per_bar(bars_per_year) * np.maximum(-exposure, 0.0)
    return tx, carry, borrow


def extract_trades(
    exposure: np.ndarray, gross: np.ndarray, carry_borrow: np.ndarray, tc: float
) -> pd.DataFrame:
    """Runs of constant non-zero exposure as trades.

    A trade entered at decision ``entry_bar`` is held for steps ``entry_bar .. exit_bar-1`` and
    closed at ``exit_bar``'s close (``open`` when still held at the last bar). Its return compounds
    the held steps' gross return less carry/borrow, times ``(1 - tc*|exposure|)`` for the entry and
    again for the exit when closed.
    """
    m = len(exposure)
    cols = ["entry_bar", "exit_bar", "side", "exposure", "holding_bars", "return", "open"]
    if m == 0:
        return pd.DataFrame(columns=cols)
    change = np.empty(m, dtype=bool)
    change[0] = True
    change[1:] = exposure[1:] != exposure[:-1]
    starts = np.flatnonzero(change)
    ends = np.r_[starts[1:], m]  # exclusive step index = exit decision bar
    keep = exposure[starts] != 0
    starts, ends = starts[keep], ends[keep]
    if len(starts) == 0:
        return pd.DataFrame(columns=cols)
    step_growth = np.maximum(1.0 + gross - carry_borrow, 1e-300)
    clog = np.r_[0.0, np.cumsum(np.log(step_growth))]
    expo = exposure[starts]
    is_open = ends == m
    side_cost = np.clip(tc * np.abs(expo), 0.0, 1.0)
    growth = np.exp(clog[ends] - clog[starts]) * (1.0 - side_cost) * np.where(is_open, 1.0, 1.0 - side_cost)
    return pd.DataFrame(
        {
            "entry_bar": starts,
            "exit_bar": ends,
            "side": np.sign(expo).astype(np.int8),
            "exposure": expo,
            "holding_bars": ends - starts,
            "return": growth - 1.0,
            "open": is_open,
        }
    )


def backtest(
    positions: np.ndarray,
    returns: np.ndarray,
    costs: CostModel | None = None,
    bars_per_year: float = 105_120,
    initial: float = 1.0,
    ruin_fraction: float = 0.0,
) -> BacktestResult:
    """Backtest ``positions`` (decided at each close) against bar ``returns``; see the module doc.

    The account is ruined at the first close where equity <= ``ruin_fraction * initial`` (0: only a
    loss of everything, as in the env; e.g. 1e-6 treats $0.01 left of $10,000 as the $0 it is).
    """
    if not bars_per_year > 0:
        raise ValueError(f"bars_per_year must be > 0, got {bars_per_year}")
    if not initial > 0:
        raise ValueError(f"initial must be > 0, got {initial}")
    if not 0 <= ruin_fraction < 1:
        raise ValueError(f"ruin_fraction must be in [0, 1), got {ruin_fraction}")
    costs = costs or CostModel()
    pos, ret = _validate(positions, returns)
    exposure = costs.leverage * pos[:-1]
    worst = float(np.max(np.abs(exposure), initial=0.0))
    if worst > costs.max_leverage + 1e-12:
        raise ValueError(f"|exposure| {worst} exceeds max_leverage {costs.max_leverage}")
    gross = exposure * ret[1:]
    tx, carry, borrow = step_costs(exposure, costs, bars_per_year)
    raw_net = gross - tx - carry - borrow

    path = np.cumprod(np.maximum(1.0 + raw_net, 0.0))
    dead = np.flatnonzero(path <= ruin_fraction)
    net = raw_net.copy()
    ruin_bar = None
    if len(dead):
        k = int(dead[0])
        net[k] = -1.0
        net[k + 1 :] = 0.0
        ruin_bar = k + 1
    equity = np.empty(len(pos))
    equity[0] = initial
    np.cumprod(1.0 + net, out=equity[1:])
    equity[1:] *= initial
    if ruin_bar is not None:
        equity[ruin_bar:] = 0.0

    trades = extract_trades(exposure, gross, carry + borrow, costs.transaction_cost)
    if ruin_bar is not None:  # nothing is traded with a ruined account
        trades = trades[trades["entry_bar"] < ruin_bar].reset_index(drop=True)
        last = len(trades) - 1
        if last >= 0 and trades.loc[last, "exit_bar"] >= ruin_bar:
            trades.loc[last, ["exit_bar", "return", "open"]] = [ruin_bar, -1.0, False]
            trades.loc[last, "holding_bars"] = ruin_bar - trades.loc[last, "entry_bar"]
    return BacktestResult(
        positions=pos,
        exposure=exposure,
        gross_returns=gross,
        transaction_costs=tx,
        carry_costs=carry,
        borrow_costs=borrow,
        net_returns=net,
        equity=equity,
        initial=float(initial),
        bars_per_year=float(bars_per_year),
        ruined=ruin_bar is not None,
        ruin_bar=ruin_bar,
        trades=trades,
        raw_net_returns=raw_net,
    )
