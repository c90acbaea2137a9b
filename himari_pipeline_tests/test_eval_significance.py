"""PSR / DSR against the papers' formulas, PBO by CSCV against a loop reference, permutation test."""

from __future__ import annotations

import math
import time
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from himari_pipeline.evaluation import (
    TradingRules,
    backtest,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    per_bar_sharpes,
    permutation_pvalue,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    psr_from_moments,
    sharpe_ratio,
)

GAMMA = 0.5772156649015329


def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_psr_hand_computed() -> None:
    # SR=0.1 per bar, n=100, skew=-0.5, kurtosis=4: z = 0.1*sqrt(99)/sqrt(1 + 0.05 + 0.75*0.01)
    z = 0.1 * math.sqrt(99) / math.sqrt(1.0575)
    assert psr_from_moments(0.1, 100, -0.5, 4.0) == pytest.approx(phi(z), rel=1e-12)
    assert psr_from_moments(0.1, 100, -0.5, 4.0) == pytest.approx(0.833368, abs=1e-6)
    # normal returns, benchmark equal to the estimate -> 0.5
    assert psr_from_moments(0.2, 500, 0.0, 3.0, sr_benchmark=0.2) == pytest.approx(0.5)


def test_psr_from_returns_uses_sample_moments() -> None:
    rng = np.random.default_rng(0)
    r = rng.standard_t(5, 750) * 0.01 + 0.001
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    expected = phi((sr - 0.01) * math.sqrt(749) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert probabilistic_sharpe_ratio(r, sr_benchmark=0.01) == pytest.approx(expected, rel=1e-10)


def test_expected_max_sharpe_and_dsr() -> None:
    v, n = 0.05**2, 100
    e_max = 0.05 * ((1 - GAMMA) * stats.norm.ppf(1 - 1 / n) + GAMMA * stats.norm.ppf(1 - 1 / (n * math.e)))
    assert expected_max_sharpe(v, n) == pytest.approx(e_max, rel=1e-9)
    assert expected_max_sharpe(v, 1) == 0.0

    rng = np.random.default_rng(1)
    r = rng.normal(0.0015, 0.01, 1000)  # per-bar SR ~ 0.15
    trials = rng.normal(0.0, 0.05, 50)
    sr0 = expected_max_sharpe(trials.var(ddof=1), 50)
    dsr = deflated_sharpe_ratio(r, trials)
    assert dsr == pytest.approx(probabilistic_sharpe_ratio(r, sr_benchmark=sr0), rel=1e-12)
    assert dsr < probabilistic_sharpe_ratio(r)
    assert deflated_sharpe_ratio(r, trials, n_trials=1000) < dsr  # more trials, more deflation
    assert deflated_sharpe_ratio(r, trials[:1]) == pytest.approx(probabilistic_sharpe_ratio(r))


def _pbo_loop(m: np.ndarray, s: int) -> np.ndarray:
    blocks = np.array_split(np.arange(len(m)), s)
    n = m.shape[1]
    logits = []
    for combo in combinations(range(s), s // 2):
        is_rows = np.concatenate([blocks[i] for i in combo])
        oos_rows = np.concatenate([blocks[i] for i in range(s) if i not in combo])
        is_sr = m[is_rows].mean(0) / m[is_rows].std(0, ddof=1)
        oos_sr = m[oos_rows].mean(0) / m[oos_rows].std(0, ddof=1)
        best = int(np.argmax(is_sr))
        rank = stats.rankdata(oos_sr)[best]  # 1 = worst
        w = rank / (n + 1)
        logits.append(math.log(w / (1 - w)))
    return np.array(logits)


def test_dsr_with_unknown_trial_spread_uses_the_null_sampling_variance() -> None:
    """One series of N variants: the expected maximum uses variance 1/(T-1), by hand."""
    rng = np.random.default_rng(5)
    r = rng.normal(0.001, 0.01, 500)
    bench = expected_max_sharpe(1.0 / 499, 20)
    got = deflated_sharpe_ratio(r, None, n_trials=20)
    assert got == pytest.approx(probabilistic_sharpe_ratio(r, bench))
    assert got < probabilistic_sharpe_ratio(r)  # 20 variants tried: deflated below the plain PSR
    assert deflated_sharpe_ratio(r, None, n_trials=1) == pytest.approx(probabilistic_sharpe_ratio(r))
    with pytest.raises(ValueError, match="n_trials"):
        deflated_sharpe_ratio(r, None)


def test_pbo_matches_loop_reference() -> None:
    m = np.random.default_rng(2).normal(0, 0.01, (301, 7))
    res = probability_of_backtest_overfitting(m, n_blocks=6)
    ref = _pbo_loop(m, 6)
    assert res.n_combinations == 20
    np.testing.assert_allclose(res.logits, ref, rtol=1e-9)
    assert res.pbo == pytest.approx(np.mean(ref <= 0))


def test_pbo_high_for_noise_low_for_a_real_edge() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.01, (4000, 20))
    pbo_noise = probability_of_backtest_overfitting(noise, n_blocks=10).pbo
    assert pbo_noise > 0.3
    edge = noise.copy()
    edge[:, 0] += 0.002  # per-bar Sharpe 0.2 on one configuration
    pbo_edge = probability_of_backtest_overfitting(edge, n_blocks=10).pbo
    assert pbo_edge < 0.05
    np.testing.assert_allclose(per_bar_sharpes(edge)[0], edge[:, 0].mean() / edge[:, 0].std(ddof=1))


def _planted(n: int, seed: int, skill: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ret = np.r_[np.nan, rng.normal(0, 0.002, n - 1)]
    random_pos = rng.choice([-1.0, 0.0, 1.0], size=n)
    informed = np.r_[np.sign(ret[1:]), 0.0]  # the sign of the next return (planted, not causal)
    pos = np.where(rng.random(n) < skill, informed, random_pos)
    return pos, ret


def test_permutation_detects_a_real_edge() -> None:
    pos, ret = _planted(20_000, 4, skill=0.1)
    free = TradingRules(transaction_cost=0.0)
    res = permutation_pvalue(pos, ret, free, 105_120, n_perm=300, block=20, seed=0)
    assert res.p_value < 0.01
    assert res.p_value == pytest.approx(1 / 301)
    ref = sharpe_ratio(backtest(pos, ret, free, 105_120).raw_net_returns, 105_120)
    assert res.sharpe == pytest.approx(ref, rel=1e-9)


def test_permutation_pvalues_not_small_under_the_null() -> None:
    ps = []
    for seed in range(20):
        pos, ret = _planted(3000, 100 + seed, skill=0.0)
        pos = np.repeat(pos[:300], 10)  # persistent positions
        ps.append(permutation_pvalue(pos, ret, TradingRules(), 8760, n_perm=100, block=10, seed=seed).p_value)
    ps = np.array(ps)
    assert np.mean(ps < 0.05) <= 0.15
    assert 0.3 < ps.mean() < 0.7


def test_permutation_exact_algebra_and_determinism() -> None:
    rng = np.random.default_rng(5)
    ret = np.r_[np.nan, rng.normal(0.0003, 0.01, 999)]
    # constant exposure and no cost: every permutation has the same Sharpe -> p = 1
    res = permutation_pvalue(np.ones(1000), ret, TradingRules(transaction_cost=0.0), 8760, n_perm=50, seed=1)
    np.testing.assert_allclose(res.null_sharpes, res.sharpe, rtol=1e-9)
    assert res.p_value == 1.0
    pos = rng.choice([-1.0, 1.0], size=1000)
    for block in (1, 7):
        a = permutation_pvalue(pos, ret, TradingRules(), 8760, n_perm=64, block=block, seed=9)
        b = permutation_pvalue(pos, ret, TradingRules(), 8760, n_perm=64, block=block, seed=9)
        c = permutation_pvalue(pos, ret, TradingRules(), 8760, n_perm=64, block=block, seed=10)
        np.testing.assert_array_equal(a.null_sharpes, b.null_sharpes)
        assert not np.array_equal(a.null_sharpes, c.null_sharpes)


def test_permutation_is_fast_on_a_year_of_5m_bars() -> None:
    pos, ret = _planted(105_120, 6, skill=0.0)
    t0 = time.perf_counter()
    res = permutation_pvalue(pos, ret, TradingRules(), 105_120, n_perm=1000, block=100, seed=0)
    elapsed = time.perf_counter() - t0
    assert len(res.null_sharpes) == 1000
    assert elapsed < 15.0, f"{elapsed:.1f} s"
