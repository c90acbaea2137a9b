"""Kalman filter for a regression with drifting coefficients: ``y_t = beta_t x_t + alpha_t + v_t``.

The state ``(beta, alpha)`` is a random walk, ``s_t = s_{t-1} + w_t`` with ``w ~ N(0, q I)`` and
``q = delta / (1 - delta)``; the observation noise is ``v ~ N(0, r)``. Each bar predicts
(``P += q I``) and then updates with that bar's ``(x_t, y_t)`` (observation row ``H_t = [x_t, 1]``),
so the estimate at ``t`` uses bars ``<= t`` only. A bar where ``x`` or ``y`` is NaN only predicts.
This is the hedge-ratio filter of pairs trading (E. Chan, *Algorithmic Trading*, ch. 3), run as a
numba loop with closed-form 2x2 algebra like the EKF denoiser of :mod:`.vectorized`; filterpy's
``KalmanFilter`` is its reference in the tests. :class:`RegressionState` continues a series:
``kalman_regression(y[:k], x[:k])`` then ``kalman_regression(y[k:], x[k:], state=s)`` equals one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass
class RegressionState:
    """State after the last bar: estimate ``s = (beta, alpha)`` and its covariance ``P`` (2, 2)."""

    s: np.ndarray
    P: np.ndarray

    @classmethod
    def initial(cls, p0: float = 0.0) -> RegressionState:
        """Chan's start: ``s = 0`` and ``P = p0 I`` (0: the first bar's prediction gives ``q I``)."""
        return cls(np.zeros(2), np.eye(2) * p0)

    def copy(self) -> RegressionState:
        return RegressionState(self.s.copy(), self.P.copy())


@dataclass
class RegressionPath:
    """Per bar: the filtered ``beta`` and ``alpha``, the innovation ``y - H s_pred`` and its variance."""

    beta: np.ndarray
    alpha: np.ndarray
    innovation: np.ndarray
    innovation_var: np.ndarray

    @property
    def innovation_z(self) -> np.ndarray:
        """The innovation in standard deviations (Chan's entry signal)."""
        return self.innovation / np.sqrt(self.innovation_var)


@numba.njit(cache=True)
def _kalman_kernel(y, x, q, r, s, P, out):  # pragma: no cover - jit
    for t in range(len(y)):
        P[0, 0] += q
        P[1, 1] += q
        yt, xt = y[t], x[t]
        if np.isnan(yt) or np.isnan(xt):
            out[t, 0], out[t, 1], out[t, 2], out[t, 3] = s[0], s[1], np.nan, np.nan
            continue
        p00, p01, p10, p11 = P[0, 0], P[0, 1], P[1, 0], P[1, 1]
        ph0 = p00 * xt + p01  # P H'
        ph1 = p10 * xt + p11
        sv = xt * ph0 + ph1 + r  # H P H' + R
        e = yt - (xt * s[0] + s[1])
        k0, k1 = ph0 / sv, ph1 / sv
        s[0] += k0 * e
        s[1] += k1 * e
        # Joseph form, as filterpy: P = (I - K H) P (I - K H)' + K R K'
        a00, a01, a10, a11 = 1.0 - k0 * xt, -k0, -k1 * xt, 1.0 - k1
        b00 = a00 * p00 + a01 * p10
        b01 = a00 * p01 + a01 * p11
        b10 = a10 * p00 + a11 * p10
        b11 = a10 * p01 + a11 * p11
        P[0, 0] = b00 * a00 + b01 * a01 + k0 * r * k0
        P[0, 1] = b00 * a10 + b01 * a11 + k0 * r * k1
        P[1, 0] = b10 * a00 + b11 * a01 + k1 * r * k0
        P[1, 1] = b10 * a10 + b11 * a11 + k1 * r * k1
        out[t, 0], out[t, 1], out[t, 2], out[t, 3] = s[0], s[1], e, sv


def kalman_regression(
    y: np.ndarray,
    x: np.ndarray,
    delta: float = 1e-4,
    r: float = 1e-3,
    state: RegressionState | None = None,
) -> tuple[RegressionPath, RegressionState]:
    """Filter ``y`` on ``x`` (1-D, equal length); returns the per-bar path and the state after it."""
    yy, xx = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if yy.ndim != 1 or xx.shape != yy.shape:
        raise ValueError(f"y {yy.shape} and x {xx.shape} must be 1-D of equal length")
    if not 0 < delta < 1 or not r > 0:
        raise ValueError(f"need 0 < delta < 1 and r > 0, got delta={delta}, r={r}")
    st = (state or RegressionState.initial()).copy()
    out = np.empty((len(yy), 4))
    _kalman_kernel(yy, xx, delta / (1.0 - delta), float(r), st.s, st.P, out)
    return RegressionPath(out[:, 0], out[:, 1], out[:, 2], out[:, 3]), st
