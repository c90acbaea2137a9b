"""Return attribution: how much of a strategy's P&L is market exposure (drift) and how much is timing.

For exposures ``e[t]`` (held from close ``t`` to close ``t+1``) and market returns ``r[t+1]`` over
``n`` steps, the gross P&L splits exactly::

    sum e[t] r[t+1] = n * mean(e) * mean(r)                        market exposure (the drift)
                    + sum (e[t] - mean(e)) (r[t+1] - mean(r))      timing (n x covariance)

Exposure earns what any constant position of the same average size earns; timing is what the
changes of position around that average earn. A short-biased policy in a rising market loses on
exposure; a trend rule on the planted market earns on timing. Costs are a third, separate term.

**Significance** (positions are known, so timing is tested directly rather than inferred from the
strategy's returns as Treynor-Mazuy or Henriksson-Merton must): timing is the OLS regression
``r[t+1] = a + b e[t] + u`` (``n b var(e)`` is the timing term), its slope tested with Newey-West
(HAC) standard errors, one-sided (``b > 0``: positive timing); exposure is the HAC test of the mean
market return, one-sided in the direction of the average position (``mean(e) mean(r) > 0``). HAC
lags: ``floor(4 (n/100)^(2/9))`` (Newey-West's rule). A constant position has no timing (p = 1);
a zero average position has no exposure (p = 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Attribution", "attribute_returns", "hac_lags"]


@dataclass(frozen=True)
class Attribution:
    """One segment's split of the gross P&L (sums of per-step returns, not compounded)."""

    n_steps: int
    gross_pnl: float
    exposure_pnl: float  # n * mean(e) * mean(r)
    timing_pnl: float  # sum (e - mean e)(r - mean r)
    costs: float  # total costs (positive number), net = gross - costs
    mean_exposure: float
    exposure_share: float  # exposure / (|exposure| + |timing|), signed; nan when both are 0
    timing_share: float
    exposure_p: float  # one-sided HAC p-value of the drift in the direction of the mean exposure
    timing_p: float  # one-sided HAC p-value of the timing slope b > 0
    timing_t: float  # HAC t-statistic of the slope
    hac_lags: int

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def hac_lags(n: int) -> int:
    """Newey-West's automatic lag count ``floor(4 (n/100)^(2/9))``."""
    return int(math.floor(4 * (max(n, 1) / 100.0) ** (2.0 / 9.0)))


def _one_sided_p(t: float, positive: bool = True) -> float:
    if not math.isfinite(t):
        return 1.0
    z = t if positive else -t
    return float(0.5 * math.erfc(z / math.sqrt(2.0)))


def attribute_returns(
    exposure: np.ndarray, next_returns: np.ndarray, costs: np.ndarray | None = None
) -> Attribution:
    """Split ``sum exposure[t] * next_returns[t]`` into exposure and timing (see the module doc).

    ``exposure[t]`` is the position held during step ``t`` and ``next_returns[t]`` the market return
    of that step (``r[t+1]`` in bar terms); ``costs[t]`` the step's costs (optional).
    """
    e = np.asarray(exposure, dtype=np.float64)
    r = np.asarray(next_returns, dtype=np.float64)
    if e.shape != r.shape or e.ndim != 1:
        raise ValueError(f"exposure {e.shape} and returns {r.shape} must be 1-D of equal length")
    if len(e) < 3 or not (np.isfinite(e).all() and np.isfinite(r).all()):
        raise ValueError("attribution needs at least 3 finite steps")
    n = len(e)
    em, rm = float(e.mean()), float(r.mean())
    gross = float(e @ r)
    expo = n * em * rm
    timing = float((e - em) @ (r - rm))
    total = abs(expo) + abs(timing)
    from statsmodels.regression.linear_model import OLS  # imported on use: statsmodels.api costs ~1 s
    from statsmodels.tools.tools import add_constant

    lags = hac_lags(n)
    exposure_p = 1.0
    if em != 0.0:
        drift = OLS(r, np.ones(n)).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
        exposure_p = _one_sided_p(float(drift.tvalues[0]), positive=em > 0)
    timing_p, timing_t = 1.0, 0.0
    if float(e.std()) > 1e-12 * max(1.0, abs(em)):
        fit = OLS(r, add_constant(e, has_constant="add")).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
        timing_t = float(fit.tvalues[1])
        timing_p = _one_sided_p(timing_t)
    return Attribution(
        n_steps=n,
        gross_pnl=gross,
        exposure_pnl=expo,
        timing_pnl=timing,
        costs=float(np.sum(costs)) if costs is not None else 0.0,
        mean_exposure=em,
        exposure_share=expo / total if total > 0 else float("nan"),
        timing_share=timing / total if total > 0 else float("nan"),
        exposure_p=exposure_p,
        timing_p=timing_p,
        timing_t=timing_t,
        hac_lags=lags,
    )
