"""Is the Sharpe real? PSR, Deflated Sharpe, PBO by CSCV and a block permutation test.

Sharpe ratios here are per bar (not annualized) unless a name says otherwise: PSR/DSR compare
per-bar estimates with their standard error over ``n`` bars.

References: Bailey & Lopez de Prado, "The Sharpe Ratio Efficient Frontier" (2012, PSR) and
"The Deflated Sharpe Ratio" (2014, DSR); Bailey, Borwein, Lopez de Prado & Zhu, "The Probability
of Backtest Overfitting" (2015, CSCV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist

import numpy as np

from himari_pipeline.evaluation.backtest import Legs, backtest
from himari_pipeline.trading.rules import TradingRules

EULER_MASCHERONI = 0.5772156649015329
_N = NormalDist()


def sharpe_moments(returns: np.ndarray) -> tuple[float, float, float, int]:
    """Per-bar Sharpe ``mean/std(ddof=1)``, skewness and (non-excess) kurtosis (biased moments), n."""
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    if n < 3:
        raise ValueError("need at least 3 returns")
    mu, sd = r.mean(), r.std(ddof=1)
    d = r - mu
    m2 = np.mean(d**2)
    skew = float(np.mean(d**3) / m2**1.5) if m2 > 0 else 0.0
    kurt = float(np.mean(d**4) / m2**2) if m2 > 0 else 3.0
    return float(mu / sd) if sd > 0 else 0.0, skew, kurt, n


def psr_from_moments(
    sr: float, n: int, skew: float = 0.0, kurtosis: float = 3.0, sr_benchmark: float = 0.0
) -> float:
    """PSR = Phi((SR - SR*) sqrt(n-1) / sqrt(1 - skew SR + (kurtosis-1)/4 SR^2))."""
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if var <= 0:
        raise ValueError(f"non-positive Sharpe variance term {var}")
    return _N.cdf((sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(var))


def probabilistic_sharpe_ratio(returns: np.ndarray, sr_benchmark: float = 0.0) -> float:
    """Probability that the true per-bar Sharpe exceeds ``sr_benchmark`` (per bar), given the
    sample's length, skewness and kurtosis."""
    sr, skew, kurt, n = sharpe_moments(returns)
    return psr_from_moments(sr, n, skew, kurt, sr_benchmark)


def expected_max_sharpe(sr_variance: float, n_trials: int) -> float:
    """E[max of N per-bar Sharpes] under no skill:
    ``sqrt(V) ((1-g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))``, g = Euler-Mascheroni; 0 for N=1."""
    if n_trials < 1:
        raise ValueError("n_trials must be >= 1")
    if n_trials == 1:
        return 0.0
    g = EULER_MASCHERONI
    z = (1 - g) * _N.inv_cdf(1 - 1 / n_trials) + g * _N.inv_cdf(1 - 1 / (n_trials * math.e))
    return math.sqrt(max(sr_variance, 0.0)) * z


def deflated_sharpe_ratio(
    returns: np.ndarray, trial_sharpes: np.ndarray | None, n_trials: int | None = None
) -> float:
    """DSR: PSR of the selected strategy's ``returns`` against the expected maximum Sharpe of
    ``n_trials`` (default ``len(trial_sharpes)``) unskilled trials, whose variance is estimated from
    ``trial_sharpes`` (per-bar Sharpes of every configuration/checkpoint evaluated, the selected one
    included).

    ``trial_sharpes=None``: only the selected series is known (e.g. a strategy whose user tried
    ``n_trials`` variants), so the variance is the null's sampling variance ``1/(T-1)`` per bar.
    """
    if trial_sharpes is None:
        if not n_trials:
            raise ValueError("n_trials is needed when the trials' Sharpes are unknown")
        var, n = 1.0 / max(len(np.asarray(returns)) - 1, 1), int(n_trials)
    else:
        ts = np.asarray(trial_sharpes, dtype=np.float64)
        n = int(n_trials or len(ts))
        var = float(ts.var(ddof=1)) if len(ts) > 1 else 0.0
    return probabilistic_sharpe_ratio(returns, expected_max_sharpe(var, n))


def per_bar_sharpes(returns_matrix: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe of each column of a ``(T, N)`` matrix of per-bar returns."""
    m = np.asarray(returns_matrix, dtype=np.float64)
    sd = m.std(axis=0, ddof=1)
    return np.divide(m.mean(axis=0), sd, out=np.zeros(m.shape[1]), where=sd > 0)


@dataclass
class PBOResult:
    pbo: float  # share of combinations whose in-sample winner ranks at or below the OOS median
    logits: np.ndarray  # (C,) logit of the IS winner's relative OOS rank, per combination
    is_winner: np.ndarray  # (C,) column index of the in-sample best configuration
    n_combinations: int


def probability_of_backtest_overfitting(returns_matrix: np.ndarray, n_blocks: int = 16) -> PBOResult:
    """PBO by combinatorially symmetric cross-validation (Sharpe as the performance measure).

    Rows of ``returns_matrix`` (T bars x N configurations) are cut into ``n_blocks`` contiguous
    blocks; every choice of half of the blocks is in-sample, the rest out-of-sample. For each, the
    in-sample best column's OOS rank ``w = rank/(N+1)`` gives ``logit = ln(w/(1-w))``; PBO is the
    share of logits ``<= 0``.
    """
    m = np.asarray(returns_matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("returns_matrix must be (T, N) with N >= 2")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError("n_blocks must be even and >= 2")
    if m.shape[0] < 2 * n_blocks:
        raise ValueError(f"need at least {2 * n_blocks} rows for {n_blocks} blocks")
    blocks = np.array_split(np.arange(m.shape[0]), n_blocks)
    s1 = np.stack([m[b].sum(axis=0) for b in blocks])  # (S, N)
    s2 = np.stack([(m[b] ** 2).sum(axis=0) for b in blocks])
    cnt = np.array([len(b) for b in blocks], dtype=np.float64)
    combos = list(combinations(range(n_blocks), n_blocks // 2))
    mask = np.zeros((len(combos), n_blocks))
    for i, c in enumerate(combos):
        mask[i, list(c)] = 1.0

    def sharpe(sum1: np.ndarray, sum2: np.ndarray, n: np.ndarray) -> np.ndarray:
        mean = sum1 / n[:, None]
        var = np.maximum(sum2 - n[:, None] * mean**2, 0.0) / (n[:, None] - 1)
        sd = np.sqrt(var)
        return np.divide(mean, sd, out=np.zeros_like(mean), where=sd > 0)

    is_sr = sharpe(mask @ s1, mask @ s2, mask @ cnt)
    oos_mask = 1.0 - mask
    oos_sr = sharpe(oos_mask @ s1, oos_mask @ s2, oos_mask @ cnt)
    best = np.argmax(is_sr, axis=1)
    oos_best = oos_sr[np.arange(len(combos)), best][:, None]
    n_cols = m.shape[1]
    rank = 1.0 + (oos_sr < oos_best).sum(axis=1) + 0.5 * ((oos_sr == oos_best).sum(axis=1) - 1)
    w = rank / (n_cols + 1)
    logits = np.log(w / (1 - w))
    return PBOResult(float(np.mean(logits <= 0)), logits, best, len(combos))


@dataclass
class PermutationResult:
    p_value: float  # (1 + #{null >= observed}) / (1 + n_perm)
    sharpe: float  # observed annualized Sharpe (net of costs, no ruin floor)
    null_sharpes: np.ndarray  # (n_perm,) annualized Sharpes on permuted returns


def permutation_pvalue(
    positions: np.ndarray,
    returns: np.ndarray,
    costs: TradingRules | None,
    bars_per_year: float,
    n_perm: int = 1000,
    block: int = 100,
    seed: int = 0,
    legs: Legs | None = None,
) -> PermutationResult:
    """Block permutation test of timing skill: keep the positions, permute the returns.

    Each permutation rotates the step returns ``returns[1:]`` by a random circular offset, cuts them
    into blocks of ``block`` bars (the tail remainder stays last) and shuffles the blocks, which keeps
    volatility clustering within a block and the return distribution (so a drift that buy-and-hold
    earns is not counted as skill). Costs depend on positions only and are unchanged. The statistic is
    the net Sharpe without the ruin floor. Vectorized: each permutation costs one gather and three
    dot products. ``legs``: positions in a spread (``returns`` = ``legs.spread_returns``); its steps'
    costs (per leg, rebalancing included) stay with the positions as well.
    """
    if n_perm < 1 or block < 1:
        raise ValueError("n_perm and block must be >= 1")
    res = backtest(positions, returns, costs, bars_per_year, legs=legs)
    a = res.exposure
    c = res.costs
    r = np.asarray(returns, dtype=np.float64)[1:]
    m = len(r)
    if m < 3:
        raise ValueError("need at least 4 bars")
    k = math.sqrt(bars_per_year)
    sum_c, sum_c2, a2, ac = c.sum(), (c**2).sum(), a**2, a * c

    def sharpe_of(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        mean = s1 / m
        var = np.maximum(s2 - m * mean**2, 0.0) / (m - 1)
        sd = np.sqrt(var)
        return np.divide(mean, sd, out=np.zeros_like(mean), where=sd > 0) * k

    observed = float(sharpe_of(np.array([r @ a - sum_c]), np.array([(r**2) @ a2 - 2 * (r @ ac) + sum_c2]))[0])

    rng = np.random.default_rng(seed)
    block = min(block, m)
    nb, rem = divmod(m, block)
    within = np.arange(block, dtype=np.int64)
    r2 = np.concatenate([r, r])  # rotation without a modulo
    weights = np.stack([a, ac], axis=1)
    chunk = max(1, int(4_000_000 // m))
    null = np.empty(n_perm)
    base = np.tile(np.arange(nb, dtype=np.int64), (chunk, 1))
    for start in range(0, n_perm, chunk):
        b = min(chunk, n_perm - start)
        if block == 1:  # plain permutation: shuffle copies in place, no gather
            rp = np.tile(r, (b, 1))
            for row in rp:
                rng.shuffle(row)
        else:
            order = rng.permuted(base[:b], axis=1)
            rot = rng.integers(0, m, size=b)
            idx = np.empty((b, m), dtype=np.int64)
            idx[:, : nb * block] = (order[:, :, None] * block + within).reshape(b, nb * block)
            idx[:, nb * block :] = np.arange(nb * block, m)
            idx += rot[:, None]
            rp = r2[idx]
        lin = rp @ weights
        s1 = lin[:, 0] - sum_c
        s2 = np.einsum("ij,ij,j->i", rp, rp, a2) - 2 * lin[:, 1] + sum_c2
        null[start : start + b] = sharpe_of(s1, s2)
    p = (1 + np.count_nonzero(null >= observed - 1e-12 * abs(observed))) / (1 + n_perm)
    return PermutationResult(float(p), observed, null)
