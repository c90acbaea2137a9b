"""Vectorized position backtest with the pipeline's causal convention and trading rules.

Convention (the same as the RL env): ``positions[i]`` is decided at bar ``i``'s close and held during
bar ``i+1``, earning ``returns[i+1]`` with ``returns[i] = close[i]/close[i-1] - 1`` (``returns[0]``
is never used and may be NaN). Step ``i`` (``i = 0 .. n-2``) goes from close ``i`` to close ``i+1``
with ``exposure[i] = leverage * positions[i]`` (``exposure[-1] = 0``); its costs and net return are
:func:`~himari_pipeline.trading.rules.trade_step` of the rules (transaction, carry and borrow;
carry and borrow ``1 + gap_before[i+1]`` times when bars are missing before bar ``i+1``) and
``equity[i+1] = equity[i] * (1 + net[i])``, ``equity[0] = initial``.

So ``equity`` has one value per bar close and ``net`` one per step. The position decided at the
last bar earns nothing (there is no next return). With min hold or cooldown in the rules, a blocked
change keeps the previous position (``BacktestResult.positions`` is what was held). Equity is
floored at 0: at the first step where the compounded equity (floored at 0) is at or below the ruin
level (``ruin_equity * initial``) the account is ruined, that step's return is -1, and every later
step returns 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from himari_pipeline.trading.rules import TradingRules, enforce_holds, legs_step, trade_step


@dataclass
class BacktestResult:
    """Per-step arrays (length ``n-1``) and the equity curve (length ``n``, one value per close)."""

    positions: np.ndarray  # (n,) held (as given, with blocked changes kept), decided at each close
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
    gap_steps: np.ndarray  # (n-1,) int64: bars missing inside each step (gap_before[1:]; 0 = none)
    blocked: np.ndarray  # (n,) bool: the position wanted here was blocked by min hold / cooldown

    @property
    def costs(self) -> np.ndarray:
        return self.transaction_costs + self.carry_costs + self.borrow_costs

    @property
    def final_value(self) -> float:
        return float(self.equity[-1])

    @property
    def n_steps(self) -> int:
        return len(self.net_returns)

    @property
    def held_across_gaps(self) -> np.ndarray:
        """(n-1,) bool: steps that held a position across missing bars (their P&L: ``net_returns``)."""
        return (self.gap_steps > 0) & (self.exposure != 0)


def _validate(
    positions: np.ndarray, returns: np.ndarray, gap_before: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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
        raise ValueError(f"returns contain non-finite values at bars {np.flatnonzero(bad) + 1}")
    if gap_before is None:
        return pos, ret, None
    gaps = np.asarray(gap_before)
    if gaps.shape != pos.shape or not np.issubdtype(gaps.dtype, np.integer) or (gaps < 0).any():
        raise ValueError(f"gap_before must be {pos.shape} integers >= 0")
    return pos, ret, gaps.astype(np.int64, copy=False)


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


@dataclass(frozen=True)
class Legs:
    """The legs of a spread: bar returns ``(n, K)`` (``returns[i] = close[i]/close[i-1] - 1`` per leg,
    row 0 unused) and the weights ``(n, K)`` of one unit of spread position decided at each close
    (a long spread of 1 holds ``weights[i]`` of each leg during bar ``i+1``; gross ``sum |w| = 1``)."""

    returns: np.ndarray
    weights: np.ndarray
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        r, w = np.asarray(self.returns, np.float64), np.asarray(self.weights, np.float64)
        if r.ndim != 2 or w.shape != r.shape:
            raise ValueError(f"leg returns {r.shape} and weights {w.shape} must be (n, K) of one shape")
        bad = np.argwhere(~np.isfinite(w[:-1]))
        if len(bad):
            raise ValueError(f"leg weights are not finite at bar {int(bad[0, 0])}")
        object.__setattr__(self, "returns", r)
        object.__setattr__(self, "weights", w)

    def rows(self, lo: int, hi: int) -> Legs:
        """Bars ``lo .. hi-1`` (a segment)."""
        return Legs(self.returns[lo:hi], self.weights[lo:hi], self.names)

    @property
    def spread_returns(self) -> np.ndarray:
        """(n,) return of one unit of spread: ``weights[i-1] @ returns[i]`` (NaN at bar 0)."""
        out = np.full(len(self.returns), np.nan)
        out[1:] = np.einsum("ik,ik->i", self.weights[:-1], self.returns[1:])
        return out


def _rules(
    costs: TradingRules | None, bars_per_year: float | None, ruin_fraction: float | None, initial: float
) -> TradingRules:
    rules = costs or TradingRules()
    if bars_per_year is not None:
        if not bars_per_year > 0:
            raise ValueError(f"bars_per_year must be > 0, got {bars_per_year}")
        rules = dataclasses.replace(rules, bars_per_year=float(bars_per_year))
    if ruin_fraction is not None:
        if not 0 <= ruin_fraction < 1:
            raise ValueError(f"ruin_fraction must be in [0, 1), got {ruin_fraction}")
        rules = dataclasses.replace(rules, ruin_equity=float(ruin_fraction))
    if not initial > 0:
        raise ValueError(f"initial must be > 0, got {initial}")
    return rules


def backtest(
    positions: np.ndarray,
    returns: np.ndarray,
    costs: TradingRules | None = None,
    bars_per_year: float | None = None,
    initial: float = 1.0,
    ruin_fraction: float | None = None,
    gap_before: np.ndarray | None = None,
    legs: Legs | None = None,
) -> BacktestResult:
    """Backtest ``positions`` (decided at each close) against bar ``returns``; see the module doc.

    ``costs``: the trading rules (default :class:`TradingRules`). ``bars_per_year``: the bars'
    calendar (Sharpe annualization and borrow per bar; None = the rules' own). ``ruin_fraction``
    replaces the rules' ``ruin_equity``: the account is ruined at the first close where equity <=
    ``ruin_fraction * initial`` (0: only a loss of everything; e.g. 1e-6 treats $0.01 left of $10,000
    as the $0 it is). ``gap_before[i]``: bars missing just before bar ``i`` (None = no gaps).
    ``legs``: the positions are in a spread of these legs (``returns`` must be ``legs.spread_returns``);
    every leg pays the rules (:func:`~himari_pipeline.trading.rules.legs_step`).
    """
    rules = _rules(costs, bars_per_year, ruin_fraction, initial)
    pos, ret, gaps = _validate(positions, returns, gap_before)
    pos, blocked = enforce_holds(rules, pos)
    exposure = rules.leverage * pos[:-1]
    worst = float(np.max(np.abs(exposure), initial=0.0))
    if worst > rules.max_leverage + 1e-12:
        raise ValueError(f"|exposure| {worst} exceeds max_leverage {rules.max_leverage}")
    previous = np.empty_like(exposure)
    previous[0] = 0.0
    previous[1:] = exposure[:-1]
    span = 1.0 + gaps[1:] if gaps is not None and gaps[1:].any() else None
    if legs is None:
        step = trade_step(rules, previous, exposure, ret[1:], None, span)
    else:
        if len(legs.returns) != len(pos):
            raise ValueError(f"{len(legs.returns)} leg bars for {len(pos)} positions")
        leg_exposure = exposure[:, None] * legs.weights[:-1]
        leg_previous = np.zeros_like(leg_exposure)
        leg_previous[1:] = leg_exposure[:-1]
        step = legs_step(rules, leg_previous, leg_exposure, legs.returns[1:], None, span)
    raw_net = step.net

    path = np.cumprod(np.maximum(1.0 + raw_net, 0.0))
    dead = np.flatnonzero(rules.ruined(path))
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

    trades = extract_trades(exposure, step.pnl, step.carry_cost + step.borrow_cost, rules.transaction_cost)
    if ruin_bar is not None:  # nothing is traded with a ruined account
        trades = trades[trades["entry_bar"] < ruin_bar].reset_index(drop=True)
        last = len(trades) - 1
        if last >= 0 and trades.loc[last, "exit_bar"] >= ruin_bar:
            trades.loc[last, ["exit_bar", "return", "open"]] = [ruin_bar, -1.0, False]
            trades.loc[last, "holding_bars"] = ruin_bar - trades.loc[last, "entry_bar"]
    return BacktestResult(
        positions=pos,
        exposure=exposure,
        gross_returns=step.pnl,
        transaction_costs=step.transaction_cost,
        carry_costs=step.carry_cost,
        borrow_costs=step.borrow_cost,
        net_returns=net,
        equity=equity,
        initial=float(initial),
        bars_per_year=rules.bars_per_year,
        ruined=ruin_bar is not None,
        ruin_bar=ruin_bar,
        trades=trades,
        raw_net_returns=raw_net,
        gap_steps=np.zeros(len(exposure), dtype=np.int64) if gaps is None else gaps[1:],
        blocked=blocked,
    )
