"""Reference EKF denoiser on ``filterpy.kalman.ExtendedKalmanFilter`` (slow; for tests and benchmarks).

Same model as :mod:`himari_pipeline.ekf.model`, written with filterpy's matrices: per feature and
bar, ``predict()`` then ``update(z, HJacobian, Hx)``. (filterpy 2.0's ``predict_update`` evaluates
``H`` before predicting, so it is not used.)
"""

from __future__ import annotations

import numpy as np
from filterpy.kalman import ExtendedKalmanFilter

from himari_pipeline.ekf.model import EKFParams


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + np.exp(-v))


def ekf_filter_reference(X: np.ndarray, params: EKFParams) -> np.ndarray:
    """Filter each column of ``X`` (T, F) with one filterpy EKF per feature; returns (T, F)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(params.names):
        raise ValueError(f"ekf_filter_reference: X must be (T, {len(params.names)}), got {X.shape}")
    m = params.matrices()
    out = np.full_like(X, np.nan)
    for j in range(X.shape[1]):
        if m.passthrough[j]:
            out[:, j] = X[:, j]
            continue
        lo, span, bounded = float(m.lo[j]), float(m.span[j]), bool(m.bounded[j])

        def hx(x: np.ndarray, lo: float = lo, span: float = span, bounded: bool = bounded) -> np.ndarray:
            level = x[0, 0]
            return np.array([[lo + span * _sigmoid(level) if bounded else level]])

        def h_jacobian(x: np.ndarray, span: float = span, bounded: bool = bounded) -> np.ndarray:
            if not bounded:
                return np.array([[1.0, 0.0]])
            s = _sigmoid(x[0, 0])
            return np.array([[span * s * (1.0 - s), 0.0]])

        ekf = ExtendedKalmanFilter(dim_x=2, dim_z=1)
        ekf.F = np.array([[1.0, 1.0], [0.0, 1.0]])
        ekf.Q = np.diag([m.q_level[j], m.q_slope[j]])
        ekf.R = np.array([[m.r[j]]])
        initialised = False
        z_lo, z_hi = lo + m.clip_eps * span, lo + (1.0 - m.clip_eps) * span
        lmax = np.log((1.0 - m.clip_eps) / m.clip_eps)
        for t in range(X.shape[0]):
            z = X[t, j]
            if bounded and not np.isnan(z):
                z = min(max(z, z_lo), z_hi)
            if not initialised:
                if np.isnan(z):
                    continue
                p = (z - lo) / span
                level0 = np.log(p / (1.0 - p)) if bounded else z
                ekf.x = np.array([[level0], [0.0]])
                ekf.P = np.eye(2) * m.p0[j]
                initialised = True
            else:
                ekf.predict()
                if not np.isnan(z):
                    ekf.update(np.array([[z]]), h_jacobian, hx)
            if bounded:  # projection step of the model (see model.py)
                level, slope = ekf.x[0, 0], ekf.x[1, 0]
                if level > lmax:
                    ekf.x = np.array([[lmax], [min(slope, 0.0)]])
                elif level < -lmax:
                    ekf.x = np.array([[-lmax], [max(slope, 0.0)]])
            out[t, j] = hx(ekf.x)[0, 0]
    return out
