"""Trading rules shared by the RL env, the greedy replay and the backtest."""

from himari_pipeline.trading.rules import (
    StepOutcome,
    TradingRules,
    advance_hold,
    enforce_holds,
    hold_blocked,
    hold_restricted,
    legs_step,
    trade_step,
)

__all__ = [
    "StepOutcome",
    "TradingRules",
    "advance_hold",
    "enforce_holds",
    "hold_blocked",
    "hold_restricted",
    "legs_step",
    "trade_step",
]
