"""Leak probes: a planted leak is flagged, honest features are not; ablation and shuffle tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from himari_pipeline.evaluation import (
    TradingRules,
    backtest,
    feature_return_correlations,
    input_ablation,
    next_returns,
    prices_from_returns,
    sharpe_ratio,
    shuffle_test,
)
from himari_pipeline.evaluation.leakage import (
    ablation_is_constant,
    shuffle_orders,
    shuffle_returns,
    shuffle_sharpe_positive,
)


def _market(n: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return np.r_[np.nan, rng.standard_t(4, n - 1) * 0.002], rng


def test_correlations_match_scipy_and_threshold_formula() -> None:
    ret, rng = _market(2000, 0)
    y = next_returns(ret)
    assert np.isnan(y[-1]) and y[0] == ret[1]
    x = rng.normal(size=(2000, 3))
    x[:10, 1] = np.nan  # warm-up rows are dropped
    table = feature_return_correlations(x, ["a", "b", "c"], y)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    for j, name in enumerate("abc"):
        assert table.loc[name, "pearson"] == pytest.approx(stats.pearsonr(x[ok, j], y[ok])[0], rel=1e-9)
        assert table.loc[name, "spearman"] == pytest.approx(stats.spearmanr(x[ok, j], y[ok])[0], rel=1e-9)
    n = int(ok.sum())
    assert (table["n"] == n).all()
    assert table["threshold"].iloc[0] == pytest.approx(stats.norm.ppf(1 - 0.05 / 12) / np.sqrt(n), rel=1e-9)


def test_planted_leak_flagged_honest_features_not() -> None:
    false_flags = 0
    for seed in range(1, 7):
        ret, rng = _market(20_000, seed)
        y = next_returns(ret)
        honest = rng.normal(size=(20_000, 10))
        honest[:, 1] = np.r_[0.0, np.cumsum(np.nan_to_num(ret[1:]))]  # causal: past returns only
        honest[:, 2] = np.nan_to_num(ret)  # the current bar's return (known at t)
        leak = np.nan_to_num(y) + rng.normal(0, 0.004, 20_000)  # r[t+1] plus noise: corr ~0.45
        weak_leak = np.nan_to_num(y) + rng.normal(0, 0.05, 20_000)  # corr ~0.06, far above 1/sqrt(n)
        x = np.column_stack([honest, leak, weak_leak])
        names = [f"honest_{i}" for i in range(10)] + ["leak", "weak_leak"]
        table = feature_return_correlations(x, names, y)
        false_flags += int(table.loc[[f"honest_{i}" for i in range(10)], "flagged"].sum())
        assert not table.loc[[f"honest_{i}" for i in range(10)], "suspicious"].any()
        assert table.loc["leak", "flagged"] and table.loc["leak", "suspicious"]
        assert table.loc["weak_leak", "flagged"] and not table.loc["weak_leak", "suspicious"]
    # family-wise error <= 5 % per table: over 6 tables, expect ~0.3 false flags
    assert false_flags <= 1


def test_input_ablation_shows_bias() -> None:
    def biased_policy(x: np.ndarray) -> np.ndarray:
        # SHORT (2) unless the last row's mean is positive: zeros -> all SHORT, ones -> all LONG
        m = x[:, -1, :].mean(axis=1)
        return np.where(m > 0, 1, 2)

    table = input_ablation(biased_policy, (16, 4), seed=0, batch=1000, action_names=["flat", "long", "short"])
    assert list(table.index) == ["zeros", "noise", "ones"]
    assert table.loc["zeros", "short"] == 1.0 and table.loc["ones", "long"] == 1.0
    assert 0.4 < table.loc["noise", "long"] < 0.6
    np.testing.assert_allclose(table.sum(axis=1), 1.0)
    with pytest.raises(ValueError):
        input_ablation(lambda x: np.full(len(x), 5), (4, 2), n_actions=3)


def test_shuffle_test_separates_leak_from_honest() -> None:
    ret, _ = _market(5000, 7)
    k = 105_120

    def honest_momentum(r: np.ndarray) -> float:
        close = prices_from_returns(r, 100.0)
        rr = np.r_[np.nan, close[1:] / close[:-1] - 1]
        pos = np.sign(pd.Series(rr).rolling(12).sum().fillna(0).to_numpy())  # causal
        return sharpe_ratio(backtest(pos, rr, TradingRules(transaction_cost=0.0), k).net_returns, k)

    def leaky(r: np.ndarray) -> float:
        pos = np.r_[np.sign(r[1:]), 0.0]  # peeks at the next return
        return sharpe_ratio(backtest(pos, r, TradingRules(transaction_cost=0.0), k).net_returns, k)

    honest = shuffle_test(honest_momentum, ret, n_shuffles=5, seed=0)
    leak = shuffle_test(leaky, ret, n_shuffles=5, seed=0)
    assert len(honest) == 5
    se = np.sqrt(k / 5000)  # std error of an annualized Sharpe over 5000 bars
    assert abs(honest.mean()) < 3 * se
    assert leak.min() > 20 * se
    np.testing.assert_array_equal(shuffle_test(leaky, ret, 5, seed=0), leak)
    # shuffling keeps the multiset of returns
    close = prices_from_returns(ret)
    assert close[-1] == pytest.approx(np.prod(1 + ret[1:]))


def test_shuffle_orders_move_whole_blocks_and_repeat_with_the_seed() -> None:
    orders = shuffle_orders(23, 3, seed=4, block=5)
    assert len(orders) == 3 and all(sorted(o) == list(range(23)) for o in orders)
    for o in orders:  # every block of 5 (and the tail of 3) stays contiguous and in order
        starts = [i for i in range(23) if o[i] % 5 == 0]
        for s in starts:
            run = o[s : s + min(5, 23 - o[s])]
            np.testing.assert_array_equal(run, np.arange(o[s], o[s] + len(run)))
    assert any(not np.array_equal(o, np.arange(23)) for o in orders)
    again = shuffle_orders(23, 3, seed=4, block=5)
    assert all(np.array_equal(a, b) for a, b in zip(orders, again, strict=True))
    with pytest.raises(ValueError, match="block"):
        shuffle_orders(10, 1, block=0)


def test_shuffle_returns_keeps_the_first_bar_and_the_values() -> None:
    r = np.r_[np.nan, np.arange(1.0, 12.0)]
    out = shuffle_returns(r, np.random.default_rng(0), block=3)
    assert np.isnan(out[0]) and sorted(out[1:]) == list(np.arange(1.0, 12.0))
    assert not np.array_equal(out[1:], r[1:])


def test_shuffle_sharpe_positive_needs_a_mean_beyond_two_standard_errors() -> None:
    assert shuffle_sharpe_positive([9.8, 10.1, 10.3, 9.9])  # a leak: the shuffle still pays
    assert not shuffle_sharpe_positive([0.4, -0.6, 0.1, -0.2])  # honest: about zero
    assert not shuffle_sharpe_positive([-3.0, -2.5])  # negative is never a leak signal
    assert not shuffle_sharpe_positive([12.0])  # one shuffle has no standard error


def test_ablation_is_constant_only_when_every_input_gives_one_action() -> None:
    cols = ["flat", "long", "short"]
    biased = pd.DataFrame([[0.0, 0.0, 1.0], [0.01, 0.0, 0.99], [0.0, 0.0, 1.0]], columns=cols)
    assert ablation_is_constant(biased)
    reacting = pd.DataFrame([[0.0, 0.0, 1.0], [0.3, 0.4, 0.3], [0.0, 1.0, 0.0]], columns=cols)
    assert not ablation_is_constant(reacting)
    assert not ablation_is_constant(pd.DataFrame(columns=cols, dtype=float))
