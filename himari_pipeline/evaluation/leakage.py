"""Leak and bias probes: feature/next-return correlations, input ablation, time-shuffle test.

On a liquid market an honest feature's correlation with the next return is of the order of
``1/sqrt(n)``; anything above ~0.3 is a leak, not an edge (a leak bar as loose as ``|corr| < 0.95``
lets a feature at -0.62 through).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from himari_pipeline.vocabulary import COLLAPSE_MAX_SHARE


def next_returns(returns: np.ndarray) -> np.ndarray:
    """``out[t] = returns[t+1]`` (NaN at the last bar): the target a decision at ``t`` earns."""
    r = np.asarray(returns, dtype=np.float64)
    return np.r_[r[1:], np.nan]


def _pearson_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    yc = y - y.mean()
    den = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
    return np.divide(xc.T @ yc, den, out=np.zeros(x.shape[1]), where=den > 0)


def feature_return_correlations(
    features: np.ndarray,
    names: Sequence[str],
    returns_next: np.ndarray,
    alpha: float = 0.05,
    suspicious_abs_corr: float = 0.3,
) -> pd.DataFrame:
    """Pearson and Spearman correlation of each feature at ``t`` with ``returns_next[t]`` (= r[t+1]).

    Rows with any NaN (warm-up, last bar) are dropped. ``threshold = z_{1-alpha/(4F)} / sqrt(n)``
    (two-sided, Bonferroni over the 2F tests: F features, Pearson and Spearman), so honest features
    raise any flag with probability <= ``alpha``; ``flagged`` when either |corr| exceeds it (a feature
    that predicts the next bar beyond chance: either a real edge or a leak, look at it) and
    ``suspicious`` when either |corr| exceeds ``suspicious_abs_corr`` (on real markets: a leak).
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(returns_next, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(y) or x.shape[1] != len(names):
        raise ValueError(f"features {x.shape}, names {len(names)}, returns_next {y.shape} do not match")
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n, f = x.shape
    if n < 3:
        raise ValueError("fewer than 3 complete rows")
    pearson = _pearson_columns(x, y)
    rx = pd.DataFrame(x).rank(method="average").to_numpy()
    ry = pd.Series(y).rank(method="average").to_numpy()
    spearman = _pearson_columns(rx, ry)
    threshold = NormalDist().inv_cdf(1 - alpha / (4 * f)) / math.sqrt(n)
    worst = np.maximum(np.abs(pearson), np.abs(spearman))
    return pd.DataFrame(
        {
            "pearson": pearson,
            "spearman": spearman,
            "n": n,
            "threshold": threshold,
            "flagged": worst > threshold,
            "suspicious": worst > suspicious_abs_corr,
        },
        index=pd.Index(list(names), name="feature"),
    )


def input_ablation(
    action_fn: Callable[[np.ndarray], np.ndarray],
    window_shape: tuple[int, ...],
    seed: int = 0,
    batch: int = 512,
    n_actions: int = 3,
    action_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Action distribution of a policy fed all-zeros, standard-normal noise and all-ones windows.

    ``action_fn`` maps a ``(batch, *window_shape)`` float32 array to ``batch`` integer actions. A
    policy whose distribution barely depends on its input (or that picks one action on zeros, the
    value of a standardized feature at its mean) carries a bias, not a signal.
    """
    rng = np.random.default_rng(seed)
    inputs = {
        "zeros": np.zeros((batch, *window_shape), dtype=np.float32),
        "noise": rng.standard_normal((batch, *window_shape)).astype(np.float32),
        "ones": np.ones((batch, *window_shape), dtype=np.float32),
    }
    names = list(action_names) if action_names is not None else [f"action_{i}" for i in range(n_actions)]
    rows = {}
    for kind, x in inputs.items():
        acts = np.asarray(action_fn(x)).astype(np.int64).ravel()
        if len(acts) != batch or acts.min() < 0 or acts.max() >= n_actions:
            raise ValueError(
                f"action_fn returned {len(acts)} actions outside [0, {n_actions}) or not {batch}"
            )
        rows[kind] = np.bincount(acts, minlength=n_actions) / batch
    return pd.DataFrame.from_dict(rows, orient="index", columns=names)


def ablation_is_constant(
    ablation: pd.DataFrame, max_share: float = COLLAPSE_MAX_SHARE, min_long_variation: float = 0.02
) -> bool:
    """Whether an :func:`input_ablation` table shows one action whatever the input (a constant bias).

    True when every input kind gives some action more than ``max_share`` of the decisions and the
    ``long`` share varies by less than ``min_long_variation`` across the kinds.
    """
    if ablation.empty:
        return False
    long_var = float(ablation["long"].max() - ablation["long"].min())
    return bool(ablation.max(axis=1).min() > max_share and long_var < min_long_variation)


def block_order(n: int, rng: np.random.Generator, block: int = 1) -> np.ndarray:
    """A row order that shuffles ``n`` rows in contiguous blocks of ``block`` (the last may be shorter)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    starts = np.arange(0, n, block)
    pieces = [np.arange(s, min(s + block, n)) for s in starts[rng.permutation(len(starts))]]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


def shuffle_orders(n: int, n_shuffles: int, seed: int = 0, block: int = 1) -> list[np.ndarray]:
    """``n_shuffles`` independent block orders of ``n`` rows (one generator seeded ``seed``, in turn).

    Apply one order to every per-row array of a segment (features, regimes, returns) to shuffle the
    rows together: a decision at ``t`` then earns the return of an unrelated bar.
    """
    rng = np.random.default_rng(seed)
    return [block_order(n, rng, block) for _ in range(n_shuffles)]


def shuffle_returns(returns: np.ndarray, rng: np.random.Generator, block: int = 1) -> np.ndarray:
    """Permute ``returns[1:]`` in contiguous blocks (``returns[0]`` stays first)."""
    r = np.asarray(returns, dtype=np.float64)
    return np.r_[r[:1], r[1:][block_order(len(r) - 1, rng, block)]] if len(r) > 1 else r.copy()


def shuffle_sharpe_positive(sharpes: Sequence[float]) -> bool:
    """Whether shuffled-data Sharpes are above 0 by more than two standard errors of their mean.

    Needs at least two shuffles. An honest evaluation scores shuffled bars about zero less costs; a
    clearly positive mean means it pays the policy a return its inputs already contain.
    """
    s = np.asarray(sharpes, dtype=np.float64)
    if len(s) < 2:
        return False
    mean, se = float(s.mean()), float(s.std(ddof=1) / math.sqrt(len(s)))
    return mean > 0 and mean > 2 * se


def prices_from_returns(returns: np.ndarray, start: float = 1.0) -> np.ndarray:
    """Rebuild closes from returns (``returns[0]`` ignored): shuffle returns, never price levels,
    or the shuffled series gets absurd jumps that a policy can trade for a large shuffle-test Sharpe."""
    r = np.asarray(returns, dtype=np.float64).copy()
    r[0] = 0.0
    return start * np.cumprod(1.0 + r)


def shuffle_test(
    evaluate: Callable[[np.ndarray], float],
    returns: np.ndarray,
    n_shuffles: int = 5,
    seed: int = 0,
    block: int = 1,
) -> np.ndarray:
    """Re-run ``evaluate`` on time-shuffled returns; returns the statistic (e.g. Sharpe) per shuffle.

    ``evaluate(returns)`` must rebuild whatever it needs (prices, features, decisions) from the
    returns it is given. Shuffling destroys all temporal structure, so an honest policy's Sharpe
    should centre on 0 (no better than :func:`permutation_pvalue`'s null); a clearly positive mean
    means the evaluation sees the return it is scored on (a leak).
    """
    rng = np.random.default_rng(seed)
    return np.array([float(evaluate(shuffle_returns(returns, rng, block))) for _ in range(n_shuffles)])
