"""Baselines with price history before the judged bars, and every subject's backtest in one call."""

from __future__ import annotations

import numpy as np
import pytest

from himari_pipeline.evaluation.backtest import backtest
from himari_pipeline.evaluation.baselines import (
    SUBJECTS,
    baseline_positions,
    ma_crossover_positions,
    random_positions_like,
    subject_backtests,
)
from himari_pipeline.trading.rules import TradingRules


def _market(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.cumprod(1 + rng.normal(0.0002, 0.005, n))
    return close, np.r_[np.nan, close[1:] / close[:-1] - 1]


def test_moving_averages_see_the_history_before_the_judged_bars() -> None:
    close, _ = _market(300, 1)
    policy = np.ones(100)  # the last 100 bars are judged; the 200 before are history
    got = baseline_positions(close, policy, fast=5, slow=20)
    np.testing.assert_array_equal(got["ma_crossover"], ma_crossover_positions(close, 5, 20)[200:])
    assert (got["ma_crossover"] != 0).all()  # warmed up on the history, never flat
    assert got["buy_and_hold"].tolist() == [1.0] * 100 and got["flat"].tolist() == [0.0] * 100
    with pytest.raises(ValueError, match="prices"):
        baseline_positions(close[:50], policy)


def test_subject_backtests_run_each_subject_net_of_the_same_costs() -> None:
    close, ret = _market(500, 2)
    start = 100
    r = ret[start:].copy()
    r[0] = 0.0
    policy = np.sign(np.sin(np.arange(400) / 7.0))
    costs = TradingRules(transaction_cost=0.002)
    out = subject_backtests(close, r, policy, costs, 8760, seed=3, fast=5, slow=20)
    assert tuple(out) == SUBJECTS
    expected = {
        "policy": policy,
        "buy_and_hold": np.ones(400),
        "flat": np.zeros(400),
        "ma_crossover": ma_crossover_positions(close, 5, 20)[start:],
        "random_same_turnover": random_positions_like(policy, 3),
    }
    for name, pos in expected.items():
        np.testing.assert_array_equal(out[name].equity, backtest(pos, r, costs, 8760).equity)
    assert out["flat"].final_value == 1.0
    with pytest.raises(ValueError, match="equal length"):
        subject_backtests(close, r[:-1], policy, costs, 8760)
