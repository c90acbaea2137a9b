"""Leak and bias probes: feature/next-return correlations, input ablation, time-shuffle test.

The lab log's "Experiment 9" passed its own leakage check with a feature at corr -0.62 with
``r[t+1]`` because the bar was ``|corr| < 0.95``. On a liquid market an honest feature's correlation
with the next return is of the order of ``1/sqrt(n)``; anything above ~0.3 is a leak, not an edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd


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


def shuffle_returns(returns: np.ndarray, rng: np.random.Generator, block: int = 1) -> np.ndarray:
    """Permute ``returns[1:]`` in contiguous blocks (``returns[0]`` stays first)."""
    r = np.asarray(returns, dtype=np.float64)
    body = r[1:]
    cuts = np.arange(0, len(body), block)
    order = rng.permutation(len(cuts))
    pieces = [body[s : s + block] for s in cuts[order]]
    return np.r_[r[:1], np.concatenate(pieces)] if pieces else r.copy()


def prices_from_returns(returns: np.ndarray, start: float = 1.0) -> np.ndarray:
    """Rebuild closes from returns (``returns[0]`` ignored): shuffle returns, never price levels,
    or the shuffled series gets the absurd jumps the lab log blamed for its shuffle-test Sharpe."""
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
    means the evaluation sees the return it is scored on (a leak), as in the lab log's Sharpe ~10.
    """
    rng = np.random.default_rng(seed)
    return np.array([float(evaluate(shuffle_returns(returns, rng, block))) for _ in range(n_shuffles)])
