"""Backtest engine and baselines: hand computations, a loop reference, ruin, causality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.evaluation import (
    TradingRules,
    backtest,
    baseline_table,
    buy_and_hold_positions,
    ma_crossover_positions,
    random_positions_like,
)

CLOSE = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
RETURNS = np.r_[np.nan, CLOSE[1:] / CLOSE[:-1] - 1]  # [nan, .1, -.1, 0, .1]
POS = np.array([1.0, 1.0, -1.0, 0.0, 1.0])  # the last decision earns nothing


def test_hand_computed_tiny_series() -> None:
    res = backtest(POS, RETURNS, TradingRules(transaction_cost=0.01, carry_cost=0.001), bars_per_year=8760)
    np.testing.assert_allclose(res.gross_returns, [0.1, -0.1, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(res.transaction_costs, [0.01, 0.0, 0.02, 0.01], atol=1e-15)
    np.testing.assert_allclose(res.carry_costs, [0.001, 0.001, 0.001, 0.0], atol=1e-15)
    net = [0.089, -0.101, -0.021, -0.01]
    np.testing.assert_allclose(res.net_returns, net, atol=1e-15)
    np.testing.assert_allclose(res.equity, np.r_[1.0, np.cumprod(1 + np.array(net))], rtol=1e-14)
    assert res.final_value == pytest.approx(1.089 * 0.899 * 0.979 * 0.99, rel=1e-14)
    assert not res.ruined and res.ruin_bar is None

    t = res.trades
    assert t["entry_bar"].tolist() == [0, 2]
    assert t["exit_bar"].tolist() == [2, 3]
    assert t["side"].tolist() == [1, -1]
    assert t["holding_bars"].tolist() == [2, 1]
    assert not t["open"].any()
    long_ret = (1.1 - 0.001) * (0.9 - 0.001) * 0.99 * 0.99 - 1
    short_ret = (1.0 - 0.001) * 0.99 * 0.99 - 1
    np.testing.assert_allclose(t["return"], [long_ret, short_ret], rtol=1e-12)


def _loop_reference(pos, ret, c: TradingRules, k: float, initial: float = 1.0) -> np.ndarray:
    """Plain loop with the env's per-step formula (rl/env.py)."""
    equity = [initial]
    old = 0.0
    for i in range(len(pos) - 1):
        new = c.leverage * pos[i]
        costs = (
            c.transaction_cost * abs(new - old)
            + c.carry_cost * abs(new)
            + c.borrow_rate_annual / k * max(-new, 0.0)
        )
        e = equity[-1] * (1 + new * ret[i + 1] - costs)
        equity.append(max(e, 0.0) if equity[-1] > 0 else 0.0)
        old = new
    return np.array(equity)


def test_matches_loop_reference_with_all_costs_and_leverage() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    ret = np.r_[np.nan, rng.normal(0, 0.004, n - 1)]
    pos = rng.choice([-1.0, 0.0, 1.0], size=n, p=[0.3, 0.2, 0.5])
    c = TradingRules(
        transaction_cost=0.0007, carry_cost=2e-5, borrow_rate_annual=0.08, leverage=1.5, max_leverage=2
    )
    res = backtest(pos, ret, c, bars_per_year=105_120, initial=10_000.0)
    np.testing.assert_allclose(res.equity, _loop_reference(pos, ret, c, 105_120, 10_000.0), rtol=1e-10)
    np.testing.assert_allclose(res.exposure, 1.5 * pos[:-1])
    np.testing.assert_allclose(res.borrow_costs, 0.08 / 105_120 * np.maximum(-1.5 * pos[:-1], 0))
    np.testing.assert_allclose(res.net_returns, res.gross_returns - res.costs, atol=1e-15)


def test_ruin_floors_equity_at_zero_for_good() -> None:
    ret = np.array([np.nan, 0.01, 0.6, -0.3, 0.2, 0.1])
    pos = np.array([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    c = TradingRules(transaction_cost=0.0, leverage=2.0, max_leverage=2.0)
    res = backtest(pos, ret, c, bars_per_year=8760)
    assert res.ruined and res.ruin_bar == 2  # step 1: 1 - 2*0.6 = -0.2 <= 0
    np.testing.assert_allclose(res.equity, [1.0, 0.98, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(res.net_returns, [-0.02, -1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(res.equity, _loop_reference(pos, ret, c, 8760))
    assert res.trades["return"].iloc[-1] == -1.0 and res.trades["exit_bar"].iloc[-1] == 2
    assert len(res.trades) == 1  # no trade is opened by a ruined account


def test_validation_errors() -> None:
    with pytest.raises(ValueError, match="leverage"):
        TradingRules(leverage=3.0, max_leverage=2.0)
    with pytest.raises(ValueError, match="transaction_cost"):
        TradingRules(transaction_cost=-0.1)
    with pytest.raises(ValueError, match="max_leverage"):
        backtest(np.array([3.0, 0.0]), np.array([np.nan, 0.1]), TradingRules(max_leverage=2.0), 8760)
    with pytest.raises(ValueError, match="non-finite"):
        backtest(np.ones(4), np.array([np.nan, 0.1, np.nan, 0.0]), TradingRules(), 8760)
    with pytest.raises(ValueError, match="equal length"):
        backtest(np.ones(4), np.zeros(3), TradingRules(), 8760)


def test_backtest_is_truncation_invariant() -> None:
    rng = np.random.default_rng(0)
    n = 500
    ret = np.r_[np.nan, rng.normal(0, 0.01, n - 1)]
    pos = rng.choice([-1.0, 0.0, 1.0], size=n)
    full = backtest(pos, ret, TradingRules(carry_cost=1e-5), 8760)
    for k in (2, 17, 250, 499):
        part = backtest(pos[:k], ret[:k], TradingRules(carry_cost=1e-5), 8760)
        np.testing.assert_array_equal(part.equity, full.equity[:k])


# ---- baselines -------------------------------------------------------------------------------


def _market(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.cumprod(1 + rng.normal(0.0001, 0.005, n))
    return close, np.r_[np.nan, close[1:] / close[:-1] - 1]


def test_buy_and_hold_tracks_the_price() -> None:
    close, ret = _market(1000, 1)
    res = backtest(buy_and_hold_positions(1000), ret, TradingRules(transaction_cost=0.0), 8760)
    np.testing.assert_allclose(res.equity, close / close[0], rtol=1e-10)
    res_c = backtest(buy_and_hold_positions(1000), ret, TradingRules(transaction_cost=0.001), 8760)
    assert res_c.final_value == pytest.approx((1 + ret[1] - 0.001) * close[-1] / close[1], rel=1e-10)


def test_ma_crossover_is_causal_and_correct() -> None:
    close, _ = _market(400, 2)
    pos = ma_crossover_positions(close, fast=5, slow=20)
    assert (pos[:19] == 0).all()
    i = 100
    expected = 1.0 if close[i - 4 : i + 1].mean() > close[i - 19 : i + 1].mean() else -1.0
    assert pos[i] == expected
    for k in (25, 150, 399):
        np.testing.assert_array_equal(ma_crossover_positions(close[:k], 5, 20), pos[:k])


def test_random_policy_matches_turnover_and_levels() -> None:
    rng = np.random.default_rng(4)
    policy = np.repeat(rng.choice([-1.0, 0.0, 1.0], size=2000, p=[0.3, 0.1, 0.6]), 5)
    rand = random_positions_like(policy, seed=7)
    np.testing.assert_array_equal(rand, random_positions_like(policy, seed=7))
    assert not np.array_equal(rand, random_positions_like(policy, seed=8))
    assert set(np.unique(rand)) <= {-1.0, 0.0, 1.0}
    changes = lambda p: np.count_nonzero(np.diff(p, prepend=0.0))  # noqa: E731
    turnover = lambda p: np.abs(np.diff(p, prepend=0.0)).sum()  # noqa: E731
    assert changes(rand) == changes(policy)
    assert turnover(rand) == pytest.approx(turnover(policy), rel=0.1)


def test_baseline_table_rows_net_of_same_costs() -> None:
    close, ret = _market(2000, 5)
    policy = ma_crossover_positions(close, 10, 40)
    costs = TradingRules(transaction_cost=0.001)
    ts = pd.date_range("2025-01-01", periods=2000, freq="1h", tz="UTC")
    table = baseline_table(close, ret, policy, costs, 8760, seed=1, timestamps=ts, fast=10, slow=40)
    assert list(table.index) == ["policy", "buy_and_hold", "flat", "ma_crossover", "random_same_turnover"]
    assert table.loc["flat", "final_value"] == 1.0 and table.loc["flat", "sharpe"] == 0.0
    assert table.loc["policy", "final_value"] == pytest.approx(table.loc["ma_crossover", "final_value"])
    bh = backtest(np.ones(2000), ret, costs, 8760)
    assert table.loc["buy_and_hold", "final_value"] == pytest.approx(bh.final_value)
    assert table.loc["buy_and_hold", "total_transaction_cost"] == pytest.approx(0.001)
    assert "sharpe_daily" in table.columns


def test_ruin_fraction_treats_dust_as_zero() -> None:
    ret = np.r_[np.nan, np.full(10, -0.5)]
    pos = np.ones(11)
    c = TradingRules(transaction_cost=0.0)
    assert not backtest(pos, ret, c, 8760).ruined  # 0.5**10 > 0
    res = backtest(pos, ret, c, 8760, ruin_fraction=0.01)
    assert res.ruined and res.ruin_bar == 7  # 0.5**7 = 0.0078 <= 0.01
    assert res.equity[6] == pytest.approx(0.5**6) and (res.equity[7:] == 0).all()
    own = TradingRules(transaction_cost=0.0, ruin_equity=0.01)  # the rules' own ruin level, as in the env
    assert backtest(pos, ret, own, 8760).ruin_bar == 7
    assert not backtest(pos, ret, own, 8760, ruin_fraction=0.0).ruined  # the argument overrides it
