r"""State-space model of the causal EKF feature denoiser, and its parameters.

Each feature column is filtered independently with a local linear trend model:

- state ``x = [level, slope]``, transition ``F = [[1, 1], [0, 1]]``, process noise
  ``Q = diag(q_level, q_slope) * s2``;
- unbounded features: linear measurement ``z = level + v``, ``v ~ N(0, R)`` with ``R = 1`` and
  ``s2 = 1``. The Kalman gains depend only on ``Q / R`` and ``P0 / R``, so no data-dependent scale
  (no full-sample statistic) is needed;
- bounded oscillators with range ``(lo, hi)``: non-linear measurement
  ``z = h(level) = lo + (hi - lo) * sigmoid(level) + v``. The state lives in logit space so the
  estimate always stays inside the range. ``R = (r_frac * (hi - lo))^2`` and
  ``s2 = (4 * r_frac)^2``: at mid-range ``dh/dlevel = (hi - lo) / 4``, so a measurement noise of
  ``r_frac`` of the range is ``4 * r_frac`` in logit units and the ratios ``Q/R``, ``P0/R`` mean the
  same thing as for linear features. The update linearises ``h`` at the predicted state (the
  "extended" step): ``H = [(hi - lo) * s * (1 - s), 0]`` with ``s = sigmoid(level_pred)``.
  Measurements are clipped into ``[lo + e, hi - e]`` with ``e = clip_eps * (hi - lo)``, and after
  every step the state is projected onto ``|level| <= L = logit(1 - clip_eps)`` (a slope pointing
  further out is set to 0). Without this a run of readings pinned at a bound (Aroon = 100) lets the
  slope carry the level to +40, where ``H`` vanishes and the filter never listens again.

Per feature, per bar (causal: a filter, never a smoother):

1. before the first non-NaN value: output NaN, state uninitialised;
2. at the first non-NaN value ``z0``: ``level = h^-1(z0)`` (``z0`` clipped as above), ``slope = 0``,
   ``P = p0 * s2 * I``; output ``h(level)``;
3. afterwards: predict ``x = F x``, ``P = F P F' + Q``; if ``z`` is not NaN update with the Joseph
   form ``P = (I - K H) P (I - K H)' + K R K'``; project (bounded features); output ``h(level)``
   (the posterior estimate, or the prediction when ``z`` is NaN).

``passthrough`` features (calendar phases: deterministic, noise-free) are copied unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from himari_pipeline.features.catalog import FEATURE_BY_NAME, FEATURE_NAMES


@dataclass(frozen=True)
class FeatureMatrices:
    """Per-feature arrays derived from :class:`EKFParams` (shared by the fast and reference filters)."""

    bounded: np.ndarray  # bool (F,)
    passthrough: np.ndarray  # bool (F,)
    lo: np.ndarray  # (F,) lower bound (0 for linear)
    span: np.ndarray  # (F,) hi - lo (1 for linear)
    r: np.ndarray  # (F,) measurement variance R
    q_level: np.ndarray  # (F,) Q[0, 0]
    q_slope: np.ndarray  # (F,) Q[1, 1]
    p0: np.ndarray  # (F,) initial variance of level and slope
    clip_eps: float


@dataclass(frozen=True)
class EKFParams:
    """Filter parameters for a table of features; JSON-serialisable via :meth:`to_dict`."""

    names: tuple[str, ...]
    bounds: tuple[tuple[float, float] | None, ...]
    passthrough: tuple[bool, ...] = field(default=())
    q_level: float = 0.05
    q_slope: float = 1e-4
    p0: float = 1.0
    r_frac: float = 0.05
    clip_eps: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(
            self, "bounds", tuple(None if b is None else (float(b[0]), float(b[1])) for b in self.bounds)
        )
        if not self.passthrough:
            object.__setattr__(self, "passthrough", (False,) * len(self.names))
        object.__setattr__(self, "passthrough", tuple(bool(p) for p in self.passthrough))
        if not len(self.names) == len(self.bounds) == len(self.passthrough):
            raise ValueError("EKFParams: names, bounds and passthrough must have the same length")
        for b in self.bounds:
            if b is not None and not b[0] < b[1]:
                raise ValueError(f"EKFParams: bounds {b} must satisfy lo < hi")
        for key in ("q_level", "q_slope", "p0", "r_frac"):
            if not getattr(self, key) > 0:
                raise ValueError(f"EKFParams: {key} must be > 0, got {getattr(self, key)}")
        if not 0 < self.clip_eps < 0.5:
            raise ValueError(f"EKFParams: clip_eps must be in (0, 0.5), got {self.clip_eps}")

    @classmethod
    def for_features(cls, names: Sequence[str] = FEATURE_NAMES, **kwargs: float) -> EKFParams:
        """Parameters for catalog features: bounds from the catalog, calendar features passed through."""
        unknown = [n for n in names if n not in FEATURE_BY_NAME]
        if unknown:
            raise ValueError(f"EKFParams.for_features: not in the feature catalog: {unknown}")
        specs = [FEATURE_BY_NAME[n] for n in names]
        return cls(
            names=tuple(names),
            bounds=tuple(s.bounds for s in specs),
            passthrough=tuple(s.group == "calendar" for s in specs),
            **kwargs,
        )

    def to_dict(self) -> dict:
        """A JSON-ready dict (lists, floats, None)."""
        return {
            "names": list(self.names),
            "bounds": [None if b is None else [b[0], b[1]] for b in self.bounds],
            "passthrough": list(self.passthrough),
            "q_level": self.q_level,
            "q_slope": self.q_slope,
            "p0": self.p0,
            "r_frac": self.r_frac,
            "clip_eps": self.clip_eps,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EKFParams:
        return cls(
            names=tuple(d["names"]),
            bounds=tuple(None if b is None else (b[0], b[1]) for b in d["bounds"]),
            passthrough=tuple(d["passthrough"]),
            q_level=float(d["q_level"]),
            q_slope=float(d["q_slope"]),
            p0=float(d["p0"]),
            r_frac=float(d["r_frac"]),
            clip_eps=float(d["clip_eps"]),
        )

    def matrices(self) -> FeatureMatrices:
        """Per-feature ``lo, span, R, Q, P0`` arrays (see the module docstring)."""
        bounded = np.array([b is not None for b in self.bounds], dtype=np.bool_)
        lo = np.array([0.0 if b is None else b[0] for b in self.bounds])
        span = np.array([1.0 if b is None else b[1] - b[0] for b in self.bounds])
        r = np.where(bounded, (self.r_frac * span) ** 2, 1.0)
        s2 = np.where(bounded, (4.0 * self.r_frac) ** 2, 1.0)
        return FeatureMatrices(
            bounded=bounded,
            passthrough=np.array(self.passthrough, dtype=np.bool_),
            lo=lo,
            span=span,
            r=r,
            q_level=self.q_level * s2,
            q_slope=self.q_slope * s2,
            p0=self.p0 * s2,
            clip_eps=float(self.clip_eps),
        )
