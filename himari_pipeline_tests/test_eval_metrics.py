"""compute_stats vs hand computations and vs empyrical (annualization=bars_per_year)."""

from __future__ import annotations

import empyrical as ep
import numpy as np
import pandas as pd
import pytest

from himari_pipeline.evaluation import TradingRules, backtest, compute_stats, daily_returns, stats_by_group

CLOSE = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
RETURNS = np.r_[np.nan, CLOSE[1:] / CLOSE[:-1] - 1]
POS = np.array([1.0, 1.0, -1.0, 0.0, 1.0])
K = 8760.0


def test_hand_computed_stats_on_tiny_series() -> None:
    res = backtest(POS, RETURNS, TradingRules(transaction_cost=0.01, carry_cost=0.001), K)
    s = compute_stats(res, K)
    r = np.array([0.089, -0.101, -0.021, -0.01])
    final = np.prod(1 + r)
    mean, sd = r.mean(), np.sqrt(((r - r.mean()) ** 2).sum() / 3)
    assert s["final_value"] == pytest.approx(final, rel=1e-13)
    assert s["cumulative_return"] == pytest.approx(final - 1, rel=1e-12)
    assert s["annual_return"] == pytest.approx(final ** (K / 4) - 1, rel=1e-9)
    assert s["annual_volatility"] == pytest.approx(sd * np.sqrt(K), rel=1e-12)
    assert s["sharpe"] == pytest.approx(mean / sd * np.sqrt(K), rel=1e-12)
    downside = np.sqrt((0.101**2 + 0.021**2 + 0.01**2) / 4)
    assert s["sortino"] == pytest.approx(mean * K / (downside * np.sqrt(K)), rel=1e-12)
    # equity 1, 1.089, 0.979011, 0.958452, 0.948867: peak 1.089
    assert s["max_drawdown"] == pytest.approx(final / 1.089 - 1, rel=1e-12)
    assert s["calmar"] == pytest.approx(s["annual_return"] / abs(final / 1.089 - 1), rel=1e-12)
    # exposures 1, 1, -1, 0 -> |changes| 1, 0, 2, 1
    assert s["turnover_per_bar"] == pytest.approx(1.0)
    assert s["turnover_per_year"] == pytest.approx(K)
    assert s["n_position_changes"] == 3
    assert s["n_trades"] == 2
    assert s["win_rate"] == 0.0  # both trades lost after costs
    assert s["avg_hold_bars"] == 1.5
    assert s["profit_factor"] == 0.0
    assert s["exposure"] == 0.75
    assert (s["long_share"], s["short_share"], s["flat_share"]) == (0.5, 0.25, 0.25)
    assert s["total_transaction_cost"] == pytest.approx(0.04)
    assert s["total_carry_cost"] == pytest.approx(0.003)
    assert s["ruined"] == 0.0


def test_win_rate_and_profit_factor_by_hand() -> None:
    ret = np.array([np.nan, 0.02, 0.01, -0.03, 0.01, 0.0, -0.02, 0.05])
    pos = np.array([1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0])
    s = compute_stats(backtest(pos, ret, TradingRules(transaction_cost=0.0), K), K)
    # trades: long earns .02, long earns -.03, short earns -.0, long earns .05
    assert s["n_trades"] == 4
    assert s["win_rate"] == 0.5
    assert s["profit_factor"] == pytest.approx((0.02 + 0.05) / 0.03)
    assert s["avg_trade_return"] == pytest.approx((0.02 - 0.03 + 0.0 + 0.05) / 4)


@pytest.mark.parametrize("bars_per_year", [105_120, 8_760])
@pytest.mark.parametrize("seed", [0, 1])
def test_against_empyrical(bars_per_year: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    ret = np.r_[np.nan, rng.standard_t(4, n - 1) * 0.003 + 0.0002]
    pos = np.repeat(rng.choice([-1.0, 0.0, 1.0], size=n // 10), 10)
    res = backtest(pos, ret, TradingRules(transaction_cost=0.0005, carry_cost=1e-6), bars_per_year)
    s = compute_stats(res, bars_per_year)
    r = pd.Series(res.net_returns)
    kw = {"annualization": bars_per_year}
    assert s["sharpe"] == pytest.approx(ep.sharpe_ratio(r, **kw), rel=1e-9)
    assert s["sortino"] == pytest.approx(ep.sortino_ratio(r, **kw), rel=1e-9)
    assert s["max_drawdown"] == pytest.approx(ep.max_drawdown(r), rel=1e-9)
    assert s["annual_return"] == pytest.approx(ep.annual_return(r, **kw), rel=1e-9)
    assert s["annual_volatility"] == pytest.approx(ep.annual_volatility(r, **kw), rel=1e-9)
    assert s["calmar"] == pytest.approx(ep.calmar_ratio(r, **kw), rel=1e-9)
    assert s["cumulative_return"] == pytest.approx(ep.cum_returns_final(r), rel=1e-9)


def test_ruined_stats() -> None:
    ret = np.array([np.nan, 0.01, 0.6, -0.3, 0.2])
    res = backtest(np.array([-1.0, -1.0, -1.0, 1.0, 1.0]), ret, TradingRules(leverage=2, max_leverage=2), K)
    s = compute_stats(res, K)
    assert s["ruined"] == 1.0 and s["ruin_bar"] == 2
    assert s["final_value"] == 0.0 and s["cumulative_return"] == -1.0
    assert s["annual_return"] == -1.0 and s["max_drawdown"] == -1.0


def test_daily_returns_and_daily_sharpe() -> None:
    rng = np.random.default_rng(5)
    n = 288 * 6 + 1  # six days of 5-minute bars plus the opening bar
    ts = pd.date_range("2025-03-01 00:00", periods=n, freq="5min", tz="UTC")
    ret = np.r_[np.nan, rng.normal(0, 0.002, n - 1)]
    res = backtest(np.ones(n), ret, TradingRules(transaction_cost=0.0), 105_120)
    daily = daily_returns(res, ts)
    # step i is realized at ts[i+1]: day d holds steps ending in (d 00:00, d+1 00:00)
    e = pd.Series(res.equity, index=ts)
    day2 = e[pd.Timestamp("2025-03-02 23:55", tz="UTC")] / e[pd.Timestamp("2025-03-01 23:55", tz="UTC")] - 1
    assert daily.loc[pd.Timestamp("2025-03-02", tz="UTC")] == pytest.approx(day2, rel=1e-12)
    assert np.prod(1 + daily) == pytest.approx(res.final_value, rel=1e-12)
    s = compute_stats(res, 105_120, timestamps=ts)
    assert s["n_days"] == len(daily)
    assert s["sharpe_daily"] == pytest.approx(ep.sharpe_ratio(daily, annualization=365), rel=1e-9)


def test_stats_by_group() -> None:
    rng = np.random.default_rng(6)
    n = 1200
    ret = np.r_[np.nan, rng.normal(0, 0.01, n - 1)]
    pos = rng.choice([-1.0, 0.0, 1.0], size=n)
    groups = np.repeat([0, 1, 2, 1], n // 4)
    res = backtest(pos, ret, TradingRules(), K)
    table = stats_by_group(res, groups, ["calm", "trend", "crash"], K)
    assert set(table.index) == {"calm", "trend", "crash"}
    sel = groups[:-1] == 1
    row = table.loc["trend"]
    assert row["bars"] == sel.sum()
    assert row["sharpe"] == pytest.approx(ep.sharpe_ratio(res.net_returns[sel], annualization=K), rel=1e-9)
    assert row["cumulative_return"] == pytest.approx(np.prod(1 + res.net_returns[sel]) - 1, rel=1e-12)
    assert row["long_share"] == pytest.approx(np.mean(pos[:-1][sel] > 0))
    assert table["share_of_bars"].sum() == pytest.approx(1.0)
