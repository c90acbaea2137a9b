"""The trading rules, written once: costs, net return, equity, ruin, min hold and cooldown.

Convention: a position decided at bar ``t``'s close is held during bar ``t+1`` and earns
``r_next = returns[t+1]`` (``returns[i] = close[i]/close[i-1] - 1``). Costs are fractions of equity
charged at the decision::

    transaction = transaction_cost * |new_position - position|
    carry       = carry_cost * |new_position| * span
    borrow      = borrow_rate_annual / bars_per_year * max(-new_position, 0) * span
    net         = new_position * r_next - (transaction + carry + borrow)
    equity'     = equity * (1 + net);   ruined where equity' <= ruin_equity

Gaps: ``span = 1 + gap_before[t+1]``, where ``gap_before[i]`` counts the expected bars missing just
before bar ``i`` (an exchange outage, a feed hole). ``r_next`` is close-to-close, so it already spans
those missing bars; carry and borrow are charged per bar of time, so holding through ``k`` missing bars
costs them ``k + 1`` times. The transaction cost is per trade and does not scale.

Several legs (a pair, a spread): a position in the spread is a position in each leg,
``leg_position = position * weights[t]`` with the weights decided at bar ``t``'s close (e.g. from a
hedge ratio), and :func:`legs_step` charges the same rules on every leg (transaction on each leg's
traded notional, which includes rebalancing to new weights; carry on each leg's gross; borrow on each
short leg's notional) and sums them into one net return of the account. One leg of weight 1 is
:func:`trade_step` exactly.

Min hold and cooldown: a position must be kept for ``min_hold`` bars before it may change, and after
a close to flat no position may open for ``cooldown`` bars; a blocked change keeps the current
position. ``held`` counts the bars the current position (or flatness) has lasted; ``after_close`` is
True while flat after having closed a position.

Every function works elementwise on torch tensors and numpy arrays alike (and the hold functions on
plain Python scalars), so the vector env, the greedy replay and the backtest run the same formulas.
The hold functions only ask whether a position is zero and whether it changed, so they take the
env's action codes (FLAT = 0) as well as positions.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "StepOutcome",
    "TradingRules",
    "advance_hold",
    "elementwise_where",
    "enforce_holds",
    "hold_blocked",
    "hold_restricted",
    "legs_step",
    "trade_step",
]


@dataclass(frozen=True)
class TradingRules:
    """Costs (fractions of equity: 0.0015 = 0.15 %), leverage, ruin and the hold rules."""

    transaction_cost: float = 0.0015  # per unit of |position change|
    carry_cost: float = 0.0  # per bar, per unit of |position| held
    borrow_rate_annual: float = 0.0  # shorts, per year, per unit of |short position|
    bars_per_year: float = 8760.0  # the bars' calendar: borrow per bar = annual rate / this
    leverage: float = 1.0  # |position| of a full long or short
    max_leverage: float = 5.0  # |position| above this is rejected
    ruin_equity: float = 0.0  # equity (relative to the start) at or below this is ruin
    min_hold: int = 0  # bars a position must be held before it may change (0 = off)
    cooldown: int = 0  # bars flat after a close before a new position may open (0 = off)

    def __post_init__(self) -> None:
        for name in ("transaction_cost", "carry_cost", "borrow_rate_annual"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if not self.bars_per_year > 0:
            raise ValueError(f"bars_per_year must be > 0, got {self.bars_per_year}")
        if not 0 < self.max_leverage < math.inf:
            raise ValueError(f"max_leverage must be finite and > 0, got {self.max_leverage}")
        if not 0 < self.leverage <= self.max_leverage:
            raise ValueError(
                f"leverage must be in (0, max_leverage={self.max_leverage}], got {self.leverage}"
            )
        if not (math.isfinite(self.ruin_equity) and self.ruin_equity >= 0):
            raise ValueError(f"ruin_equity must be finite and >= 0, got {self.ruin_equity}")
        if self.min_hold < 0 or self.cooldown < 0:
            raise ValueError("min_hold and cooldown must be >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TradingRules:
        """The rules among ``values`` (e.g. an experiment's flat ``env:`` keys); other keys are ignored."""
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    @property
    def borrow_per_bar(self) -> float:
        return self.borrow_rate_annual / self.bars_per_year

    @property
    def holds_on(self) -> bool:
        """True when min hold or cooldown can block a change."""
        return self.min_hold > 0 or self.cooldown > 0

    def ruined(self, equity: Any) -> Any:
        """Where ``equity`` (relative to the start) is at or below the ruin level."""
        return equity <= self.ruin_equity


class StepOutcome(NamedTuple):
    """One step's money, elementwise (see the module docstring)."""

    transaction_cost: Any
    carry_cost: Any
    borrow_cost: Any
    cost: Any
    pnl: Any
    net: Any
    equity: Any
    ruined: Any


def trade_step(
    rules: TradingRules, position: Any, new_position: Any, r_next: Any, equity: Any, span: Any = None
) -> StepOutcome:
    """Costs, net return, new equity and ruin of moving from ``position`` to ``new_position`` and
    holding it over ``r_next``. ``span`` is ``1 + gap_before[t+1]`` (None: no missing bars);
    ``equity`` None skips the compounding (a whole series' net returns at once)."""
    abs_new = abs(new_position)
    twice_short = abs_new - new_position  # 2 * max(-new_position, 0), exactly
    if span is not None:
        abs_new = abs_new * span
        twice_short = twice_short * span
    tx = rules.transaction_cost * abs(new_position - position)
    carry = rules.carry_cost * abs_new
    borrow = (0.5 * rules.borrow_per_bar) * twice_short
    cost = tx + carry + borrow
    pnl = new_position * r_next
    net = pnl - cost
    if equity is None:
        return StepOutcome(tx, carry, borrow, cost, pnl, net, None, None)
    new_equity = equity * (1.0 + net)
    return StepOutcome(tx, carry, borrow, cost, pnl, net, new_equity, rules.ruined(new_equity))


def legs_step(
    rules: TradingRules,
    leg_position: Any,
    new_leg_position: Any,
    leg_r_next: Any,
    equity: Any,
    span: Any = None,
) -> StepOutcome:
    """:func:`trade_step` of every leg (last axis) summed into one account: ``(..., K)`` positions and
    next returns, ``equity`` and ``span`` of shape ``(...)``. The components are the legs' sums."""
    leg_span = None if span is None else span[..., None]
    per_leg = trade_step(rules, leg_position, new_leg_position, leg_r_next, None, leg_span)
    tx, carry, borrow, cost, pnl, net = (x.sum(-1) for x in per_leg[:6])
    if equity is None:
        return StepOutcome(tx, carry, borrow, cost, pnl, net, None, None)
    new_equity = equity * (1.0 + net)
    return StepOutcome(tx, carry, borrow, cost, pnl, net, new_equity, rules.ruined(new_equity))


def hold_restricted(rules: TradingRules, position: Any, held: Any, after_close: Any) -> Any:
    """True where only the current position is allowed (min hold or cooldown still running)."""
    in_pos = position != 0
    flat = position == 0
    return (in_pos & (held < rules.min_hold)) | (flat & after_close & (held < rules.cooldown))


def hold_blocked(rules: TradingRules, position: Any, target: Any, held: Any, after_close: Any) -> Any:
    """True where a change from ``position`` to ``target`` is blocked (the position is kept)."""
    return hold_restricted(rules, position, held, after_close) & (target != position)


def elementwise_where(cond: Any, a: Any, b: Any) -> Any:
    """``where`` for torch tensors, numpy arrays and plain scalars alike."""
    torch = sys.modules.get("torch")  # no tensor exists unless torch was imported: numpy users skip it
    if torch is not None and isinstance(cond, torch.Tensor):
        return torch.where(cond, a, b)
    if isinstance(cond, np.ndarray):
        return np.where(cond, a, b)
    return a if cond else b


def advance_hold(position: Any, new_position: Any, held: Any, after_close: Any) -> tuple[Any, Any]:
    """``held`` and ``after_close`` after the step from ``position`` to ``new_position``."""
    changed = new_position != position
    return elementwise_where(changed, 1, held + 1), elementwise_where(changed, new_position == 0, after_close)


def enforce_holds(rules: TradingRules, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A target position series (from flat, nothing held) with blocked changes kept: ``(positions,
    blocked)``; a series that already obeys the rules comes back unchanged.

    Sequential by nature, so it walks runs, not bars: a run of targets equal to the position only
    ages it, and a blocked change stays blocked until ``held`` reaches the running limit (or the run
    of targets ends).
    """
    out = np.asarray(targets, dtype=np.float64)
    blocked = np.zeros(len(out), dtype=bool)
    if not rules.holds_on or len(out) == 0:
        return out, blocked
    out = out.copy()
    n = len(out)
    starts = np.flatnonzero(np.r_[True, out[1:] != out[:-1]])
    run_end = np.repeat(np.r_[starts[1:], n], np.diff(np.r_[starts, n])).tolist()
    values = out.tolist()
    position, held, after_close = 0.0, 0, False
    i = 0
    while i < n:
        target = values[i]
        if target == position:
            held += run_end[i] - i
            i = run_end[i]
        elif hold_blocked(rules, position, target, held, after_close):
            limit = rules.min_hold if position != 0 else rules.cooldown
            stop = min(i + limit - held, run_end[i])
            out[i:stop] = position
            blocked[i:stop] = True
            held += stop - i
            i = stop
        else:
            held, after_close = advance_hold(position, target, held, after_close)
            position = target
            i += 1
    return out, blocked
