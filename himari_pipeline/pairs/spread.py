"""The spread of a pair: a causal hedge ratio, the spread, its z-score and the legs' weights.

Two legs, ``y`` (the first) and ``x``, in log prices. The hedge ratio at bar ``t`` uses bars ``<= t``:

- ``ols``: least squares of ``log y`` on ``log x`` over the last ``window`` bars (NaN before that);
- ``kalman``: the drifting-coefficient Kalman filter of :mod:`himari_pipeline.ekf.regression`
  (``delta``, ``r``), from the first bar.

The spread priced at ``t`` is ``s_t(k) = log y_k - beta_t log x_k - alpha_t``; its z-score is
``(s_t(t) - mean) / std`` over ``k`` in the last ``z_window`` bars (``ddof=1``), all with the hedge
ratio known at ``t`` (for ``ols`` with ``z_window == window`` the mean is 0: the regression's residual
over its own window). A long spread of 1 holds ``+1 / (1 + |beta|)`` of ``y`` and
``-beta / (1 + |beta|)`` of ``x`` (gross 1), so its return is about ``(r_y - beta r_x) / (1 + |beta|)``.
Every column at ``t`` is a function of bars ``<= t``: cutting the series after ``t`` leaves row ``t``
unchanged, bit for bit (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from himari_pipeline.ekf.regression import kalman_regression
from himari_pipeline.evaluation.backtest import Legs

HEDGES = ("ols", "kalman")
SPREAD_COLUMNS = ("beta", "alpha", "spread", "zscore")


@dataclass(frozen=True)
class SpreadConfig:
    """How the hedge ratio and the z-score are estimated."""

    hedge: str = "ols"  # "ols" (rolling least squares) or "kalman"
    window: int = 60  # ols: bars in the regression
    z_window: int = 60  # bars in the z-score's mean and std
    delta: float = 1e-4  # kalman: state drift q = delta / (1 - delta) per bar
    r: float = 1e-3  # kalman: observation noise variance

    def __post_init__(self) -> None:
        if self.hedge not in HEDGES:
            raise ValueError(f"hedge must be one of {HEDGES}, got {self.hedge!r}")
        if self.window < 3 or self.z_window < 3:
            raise ValueError(f"window and z_window must be >= 3, got {self.window}, {self.z_window}")

    @property
    def warmup(self) -> int:
        """Bars before the first finite z-score (it needs the hedge ratio and ``z_window`` bars)."""
        return max(self.window if self.hedge == "ols" else 1, self.z_window) - 1


@numba.njit(cache=True)
def _rolling_ols(y, x, w, beta, alpha):  # pragma: no cover - jit
    n = len(y)
    for t in range(n):
        if t < w - 1:
            beta[t] = np.nan
            alpha[t] = np.nan
            continue
        mx = 0.0
        my = 0.0
        for k in range(t - w + 1, t + 1):
            mx += x[k]
            my += y[k]
        mx /= w
        my /= w
        sxx = 0.0
        sxy = 0.0
        for k in range(t - w + 1, t + 1):
            dx = x[k] - mx
            sxx += dx * dx
            sxy += dx * (y[k] - my)
        b = sxy / sxx if sxx > 0 else np.nan
        beta[t] = b
        alpha[t] = my - b * mx


@numba.njit(cache=True)
def _zscore(y, x, beta, alpha, w, out):  # pragma: no cover - jit
    n = len(y)
    for t in range(n):
        b, a = beta[t], alpha[t]
        if t < w - 1 or np.isnan(b) or np.isnan(a):
            out[t] = np.nan
            continue
        m = 0.0
        for k in range(t - w + 1, t + 1):
            m += y[k] - b * x[k] - a
        m /= w
        v = 0.0
        for k in range(t - w + 1, t + 1):
            d = y[k] - b * x[k] - a - m
            v += d * d
        sd = np.sqrt(v / (w - 1))
        s = y[t] - b * x[t] - a
        out[t] = (s - m) / sd if sd > 0 else np.nan


def hedge_ratio(log_y: np.ndarray, log_x: np.ndarray, cfg: SpreadConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(beta, alpha)`` per bar from bars ``<= t`` (see the module doc)."""
    y = np.ascontiguousarray(log_y, dtype=np.float64)
    x = np.ascontiguousarray(log_x, dtype=np.float64)
    if cfg.hedge == "kalman":
        path, _ = kalman_regression(y, x, cfg.delta, cfg.r)
        return path.beta, path.alpha
    beta, alpha = np.empty_like(y), np.empty_like(y)
    _rolling_ols(y, x, cfg.window, beta, alpha)
    return beta, alpha


def spread_frame(closes: pd.DataFrame, cfg: SpreadConfig) -> pd.DataFrame:
    """``beta, alpha, spread, zscore`` per bar of a two-leg close table (first column ``y``)."""
    if closes.shape[1] != 2:
        raise ValueError(f"the spread model takes 2 legs, got {closes.shape[1]}")
    log = np.log(closes.to_numpy(np.float64))
    y, x = np.ascontiguousarray(log[:, 0]), np.ascontiguousarray(log[:, 1])
    beta, alpha = hedge_ratio(y, x, cfg)
    z = np.empty_like(y)
    _zscore(y, x, beta, alpha, cfg.z_window, z)
    return pd.DataFrame(
        {"beta": beta, "alpha": alpha, "spread": y - beta * x - alpha, "zscore": z}, index=closes.index
    )


def leg_weights(beta: np.ndarray) -> np.ndarray:
    """(T, 2) weights of one unit of long spread: ``(1, -beta) / (1 + |beta|)``; 0 where beta is NaN."""
    b = np.asarray(beta, dtype=np.float64)
    w = np.stack([np.ones_like(b), -b], axis=1) / (1.0 + np.abs(b))[:, None]
    return np.where(np.isfinite(w), w, 0.0)


def spread_legs(leg_returns: np.ndarray, beta: np.ndarray, names: tuple[str, ...]) -> Legs:
    """The legs of one unit of long spread: the legs' returns and :func:`leg_weights` of ``beta``."""
    return Legs(leg_returns, leg_weights(beta), names)
