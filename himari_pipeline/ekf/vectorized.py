"""Production EKF denoiser: a numba loop over bars and features with closed-form 2x2 algebra.

Implements exactly the model in :mod:`himari_pipeline.ekf.model`; checked against the filterpy
reference (:mod:`himari_pipeline.ekf.reference`) to 1e-9. The returned :class:`EKFState` lets a
later call continue from the stored tail: ``ekf_filter(X[:k])`` then ``ekf_filter(X[k:], state=s)``
equals ``ekf_filter(X)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from himari_pipeline.ekf.model import EKFParams, FeatureMatrices
from himari_pipeline.features.catalog import FEATURE_BY_NAME


@dataclass
class EKFState:
    """Filter state after the last processed bar: ``x`` (F, 2), ``P`` (F, 2, 2), ``initialised`` (F,)."""

    x: np.ndarray
    P: np.ndarray
    initialised: np.ndarray

    @classmethod
    def empty(cls, n_features: int) -> EKFState:
        return cls(
            x=np.zeros((n_features, 2)),
            P=np.zeros((n_features, 2, 2)),
            initialised=np.zeros(n_features, dtype=np.bool_),
        )

    def copy(self) -> EKFState:
        return EKFState(self.x.copy(), self.P.copy(), self.initialised.copy())

    def to_dict(self) -> dict:
        """JSON-ready (floats are written with full precision by ``json``, so a round trip is exact)."""
        return {"x": self.x.tolist(), "P": self.P.tolist(), "initialised": self.initialised.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> EKFState:
        return cls(
            x=np.asarray(d["x"], dtype=np.float64).reshape(-1, 2),
            P=np.asarray(d["P"], dtype=np.float64).reshape(-1, 2, 2),
            initialised=np.asarray(d["initialised"], dtype=np.bool_),
        )


@numba.njit(cache=True, inline="always")
def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + np.exp(-v))


@numba.njit(cache=True)
def _ekf_kernel(X, bounded, passthrough, lo, span, r, ql, qs, p0, eps, x, P, init, out):  # noqa: PLR0913
    n_t, n_f = X.shape
    for t in range(n_t):
        for j in range(n_f):
            z = X[t, j]
            if passthrough[j]:
                out[t, j] = z
                continue
            bnd = bounded[j]
            if bnd and not np.isnan(z):
                z_lo = lo[j] + eps * span[j]
                z_hi = lo[j] + (1.0 - eps) * span[j]
                z = min(max(z, z_lo), z_hi)
            if not init[j]:
                if np.isnan(z):
                    out[t, j] = np.nan
                    continue
                if bnd:
                    p = (z - lo[j]) / span[j]
                    x[j, 0] = np.log(p / (1.0 - p))
                else:
                    x[j, 0] = z
                x[j, 1] = 0.0
                P[j, 0, 0] = p0[j]
                P[j, 0, 1] = 0.0
                P[j, 1, 0] = 0.0
                P[j, 1, 1] = p0[j]
                init[j] = True
            else:
                # predict: x = F x, P = F P F' + Q
                x[j, 0] = x[j, 0] + x[j, 1]
                p00, p01, p10, p11 = P[j, 0, 0], P[j, 0, 1], P[j, 1, 0], P[j, 1, 1]
                P[j, 0, 0] = p00 + p10 + p01 + p11 + ql[j]
                P[j, 0, 1] = p01 + p11
                P[j, 1, 0] = p10 + p11
                P[j, 1, 1] = p11 + qs[j]
                if not np.isnan(z):
                    # update with H = [h, 0] linearised at the predicted level (Joseph form)
                    if bnd:
                        s = _sigmoid(x[j, 0])
                        hx = lo[j] + span[j] * s
                        h = span[j] * s * (1.0 - s)
                    else:
                        hx = x[j, 0]
                        h = 1.0
                    p00, p01, p10, p11 = P[j, 0, 0], P[j, 0, 1], P[j, 1, 0], P[j, 1, 1]
                    rj = r[j]
                    sv = h * p00 * h + rj
                    k0 = p00 * h / sv
                    k1 = p10 * h / sv
                    y = z - hx
                    x[j, 0] = x[j, 0] + k0 * y
                    x[j, 1] = x[j, 1] + k1 * y
                    a = 1.0 - k0 * h
                    b = -k1 * h
                    c0 = b * p00 + p10
                    P[j, 0, 0] = a * a * p00 + k0 * rj * k0
                    P[j, 0, 1] = a * (b * p00 + p01) + k0 * rj * k1
                    P[j, 1, 0] = c0 * a + k1 * rj * k0
                    P[j, 1, 1] = c0 * b + b * p01 + p11 + k1 * rj * k1
            if bnd:
                # project onto the feasible set: |level| <= L, slope not pointing further out
                lmax = np.log((1.0 - eps) / eps)
                if x[j, 0] > lmax:
                    x[j, 0] = lmax
                    x[j, 1] = min(x[j, 1], 0.0)
                elif x[j, 0] < -lmax:
                    x[j, 0] = -lmax
                    x[j, 1] = max(x[j, 1], 0.0)
                out[t, j] = lo[j] + span[j] * _sigmoid(x[j, 0])
            else:
                out[t, j] = x[j, 0]


def ekf_filter(
    X: np.ndarray, params: EKFParams, state: EKFState | None = None
) -> tuple[np.ndarray, EKFState]:
    """Filter each column of ``X`` (T, F) causally; return the estimates (T, F) and the final state.

    ``state`` (from a previous call on the preceding bars) is continued, not modified.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(params.names):
        raise ValueError(f"ekf_filter: X must be (T, {len(params.names)}), got {X.shape}")
    m: FeatureMatrices = params.matrices()
    st = EKFState.empty(X.shape[1]) if state is None else state.copy()
    if st.x.shape != (X.shape[1], 2):
        raise ValueError(f"ekf_filter: state is for {st.x.shape[0]} features, X has {X.shape[1]}")
    out = np.empty_like(X)
    _ekf_kernel(
        X, m.bounded, m.passthrough, m.lo, m.span, m.r, m.q_level, m.q_slope, m.p0, m.clip_eps,
        st.x, st.P, st.initialised, out,
    )  # fmt: skip
    return out, st


def denoise_features(
    features: pd.DataFrame, params: EKFParams | None = None, state: EKFState | None = None
) -> pd.DataFrame:
    """Denoised feature table: same columns (``timestamp``, features, ``warmup``), filtered values.

    ``params`` defaults to :meth:`EKFParams.for_features` over the catalog features present; other
    columns are copied unchanged. Pass ``state`` (from :func:`denoise_features_with_state` on the
    preceding rows) to continue an earlier run.
    """
    return denoise_features_with_state(features, params, state)[0]


def denoise_features_with_state(
    features: pd.DataFrame, params: EKFParams | None = None, state: EKFState | None = None
) -> tuple[pd.DataFrame, EKFState]:
    """As :func:`denoise_features`, also returning the filter state after the last row."""
    if params is None:
        params = EKFParams.for_features([c for c in features.columns if c in FEATURE_BY_NAME])
    missing = [n for n in params.names if n not in features.columns]
    if missing:
        raise ValueError(f"denoise_features: feature table lacks column(s) {missing}")
    out, st = ekf_filter(features[list(params.names)].to_numpy(dtype=np.float64), params, state)
    result = features.copy()
    for j, name in enumerate(params.names):
        result[name] = out[:, j]
    return result, st
