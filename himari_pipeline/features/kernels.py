"""The numba building blocks of the features: window-only rolling statistics and resumable EWMs.

Everything runs along the last axis, so a 1-D input is one series and a 2-D input a stack of series
(the every-row causality check stacks one window of bars per row):

* rolling sums, means, variances, correlations and mean absolute deviations are summed afresh for
  every window (:func:`rolling_sum`, :func:`rolling_var`, ...), so a value depends on the window's
  values only, not on the rounding accumulated since the start of the series as in pandas' online
  rolling algorithms (which differ by ~1e-16 relative);
* exponential moving averages run through :class:`EWMRunner`, a numba copy of pandas'
  ``ewm(adjust=False).mean()`` recursion (bit-identical to pandas, NaN handling and
  ``min_periods`` included) whose state can be stored and resumed;
* rolling min/max are selections, exact by construction.
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

# --------------------------------------------------------------------------------------------------
# Window-only rolling statistics (a fresh sum per window: the value depends on the window alone)
# --------------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _roll_sum_kernel(x, n, first, out):  # pragma: no cover - numba
    for r in range(x.shape[0]):
        for t in range(max(n - 1, first), x.shape[1]):
            s = 0.0
            for j in range(t - n + 1, t + 1):
                s += x[r, j]
            out[r, t] = s


@numba.njit(cache=True)
def _roll_var_kernel(x, n, ddof, first, out):  # pragma: no cover - numba
    for r in range(x.shape[0]):
        for t in range(max(n - 1, first), x.shape[1]):
            s = 0.0
            lo = hi = x[r, t - n + 1]
            for j in range(t - n + 1, t + 1):
                s += x[r, j]
                lo = min(lo, x[r, j])
                hi = max(hi, x[r, j])
            if np.isnan(s) or np.isinf(s):
                continue
            if lo == hi:  # a constant window has no variance (not the rounding residue of its mean)
                out[r, t] = 0.0
                continue
            m = s / n
            ss = 0.0
            for j in range(t - n + 1, t + 1):
                d = x[r, j] - m
                ss += d * d
            out[r, t] = ss / (n - ddof)


@numba.njit(cache=True)
def _roll_corr_kernel(x, y, n, first, out):  # pragma: no cover - numba
    for r in range(x.shape[0]):
        for t in range(max(n - 1, first), x.shape[1]):
            sx = 0.0
            sy = 0.0
            const_x = True
            const_y = True
            for j in range(t - n + 1, t + 1):
                sx += x[r, j]
                sy += y[r, j]
                const_x = const_x and x[r, j] == x[r, t]
                const_y = const_y and y[r, j] == y[r, t]
            if np.isnan(sx) or np.isnan(sy) or np.isinf(sx) or np.isinf(sy) or const_x or const_y:
                continue  # NaN, or a constant side (no correlation, not the rounding residue of its mean)
            mx = sx / n
            my = sy / n
            sxx = 0.0
            syy = 0.0
            sxy = 0.0
            for j in range(t - n + 1, t + 1):
                dx = x[r, j] - mx
                dy = y[r, j] - my
                sxx += dx * dx
                syy += dy * dy
                sxy += dx * dy
            if sxx > 0.0 and syy > 0.0:
                out[r, t] = sxy / np.sqrt(sxx * syy)


@numba.njit(cache=True)
def _roll_mad_kernel(x, n, first, out):  # pragma: no cover - numba
    for r in range(x.shape[0]):
        for t in range(max(n - 1, first), x.shape[1]):
            s = 0.0
            for j in range(t - n + 1, t + 1):
                s += x[r, j]
            m = s / n
            a = 0.0
            for j in range(t - n + 1, t + 1):
                a += abs(x[r, j] - m)
            out[r, t] = a / n


def as_f64(x: np.ndarray | pd.Series) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))


def _rows(x: np.ndarray) -> np.ndarray:
    """``x`` as a 2-D contiguous float64 array of rows (the kernels run along the last axis)."""
    x = as_f64(x)
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def _run(kernel, x: np.ndarray, *args) -> np.ndarray:
    """``kernel(rows of x, *args, out)`` with a NaN-filled ``out`` of ``x``'s shape."""
    x = as_f64(x)
    out = np.full(x.shape, np.nan)
    if x.size:
        kernel(_rows(x), *args, out.reshape(_rows(x).shape))
    return out


def rolling_sum(x: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """Trailing ``n``-bar sum along the last axis, NaN until ``n`` values (or when one of them is NaN).

    Every rolling statistic here computes positions ``>= first`` only (NaN before): a window's value
    does not depend on which other positions are computed.
    """
    return _run(_roll_sum_kernel, x, int(n), int(first))


def rolling_mean(x: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """Trailing ``n``-bar mean (``rolling_sum / n``)."""
    return rolling_sum(x, n, first) / n


def rolling_var(x: np.ndarray, n: int, ddof: int = 1, first: int = 0) -> np.ndarray:
    """Trailing ``n``-bar variance, two-pass per window; exactly 0 on a constant window."""
    return _run(_roll_var_kernel, x, int(n), int(ddof), int(first))


def rolling_std(x: np.ndarray, n: int, ddof: int = 1, first: int = 0) -> np.ndarray:
    """Square root of :func:`rolling_var`."""
    return np.sqrt(rolling_var(x, n, ddof, first))


def rolling_corr(x: np.ndarray, y: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """Trailing ``n``-bar Pearson correlation, two-pass per window; NaN if either side is constant."""
    x = as_f64(x)
    out = np.full(x.shape, np.nan)
    if x.size:
        _roll_corr_kernel(_rows(x), _rows(y), int(n), int(first), out.reshape(_rows(x).shape))
    return out


def rolling_mad(x: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """Trailing ``n``-bar mean absolute deviation from the window mean."""
    return _run(_roll_mad_kernel, x, int(n), int(first))


def sliding(x: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """The trailing ``n``-value windows ending at positions ``>= max(first, n - 1)`` along the last
    axis (a view; shape ``(..., positions, n)``); empty when ``x`` is shorter than ``n``."""
    x = as_f64(x)
    size = x.shape[-1]
    if size < n:
        return np.empty((*x.shape[:-1], 0, n))
    lo = max(min(first, size - 1) - n + 1, 0)
    return sliding_window_view(x[..., lo:], n, axis=-1)


def rolling_min(x: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """Trailing ``n``-bar minimum; NaN until ``n`` bars or when the window holds a NaN (as pandas')."""
    return pad_front(sliding(x, n, first).min(axis=-1), np.shape(x)[-1])


def rolling_max(x: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """Trailing ``n``-bar maximum (see :func:`rolling_min`)."""
    return pad_front(sliding(x, n, first).max(axis=-1), np.shape(x)[-1])


# --------------------------------------------------------------------------------------------------
# Resumable exponential moving averages (pandas' ewm(adjust=False).mean(), bit for bit)
# --------------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _ewm_kernel(x, alpha, minp, state, out, trajectory):  # pragma: no cover - numba
    # One row of `state` = [weighted (NaN before the first observation), old_wt, nobs] per row of
    # `x`; updated in place. `trajectory[r, i]` (when it has columns) gets the state before x[r, i].
    fac = 1.0 - alpha
    record = trajectory.shape[1] > 0
    for r in range(x.shape[0]):
        w = state[r, 0]
        old_wt = state[r, 1]
        nobs = state[r, 2]
        for i in range(x.shape[1]):
            if record:
                trajectory[r, i, 0] = w
                trajectory[r, i, 1] = old_wt
                trajectory[r, i, 2] = nobs
            cur = x[r, i]
            obs = not np.isnan(cur)
            if obs:
                nobs += 1.0
            if not np.isnan(w):
                old_wt *= fac
                if obs:
                    if w != cur:
                        w = old_wt * w + alpha * cur
                        w /= old_wt + alpha
                    old_wt = 1.0
            elif obs:
                w = cur
            out[r, i] = w if nobs >= minp else np.nan
        state[r, 0] = w
        state[r, 1] = old_wt
        state[r, 2] = nobs


def ewm_alpha(span: float | None = None, alpha: float | None = None) -> float:
    """The smoothing factor exactly as pandas derives it (through the centre of mass)."""
    if span is not None:
        com = (span - 1) / 2.0
    elif alpha is not None:
        com = (1 - alpha) / alpha
    else:
        raise ValueError("ewm_alpha: give span or alpha")
    return 1.0 / (1.0 + com)


def _fresh_ewm_state() -> list[float]:
    return [float("nan"), 1.0, 0.0]


class EWMRunner:
    """Runs the named EWMs of one computation and can resume them from stored states.

    Each EWM runs along the last axis over positions ``[start, n)`` (earlier ones are NaN), beginning
    from ``states[key]`` (a fresh state when ``states`` is None): one state ``[weighted, old_wt,
    nobs]`` (JSON-ready floats; ``weighted`` is NaN before the first observation) for every row, or
    an ``(rows, 3)`` array of one state per row of a 2-D input. The state reached just before
    position ``snapshot`` is recorded in :attr:`recorded` (after the last one when ``snapshot`` is
    None); with ``trajectory=True`` the state before every position of a 1-D input is kept in
    :attr:`trajectory` (``(n, 3)`` per key). With the defaults the runner is a plain,
    full-sample-free ``ewm(...).mean()``.
    """

    def __init__(
        self,
        states: Mapping[str, list[float] | np.ndarray] | None = None,
        start: int = 0,
        snapshot: int | None = None,
        trajectory: bool = False,
    ) -> None:
        if snapshot is not None and snapshot < start:
            raise ValueError(f"EWMRunner: snapshot {snapshot} precedes start {start}")
        self.states = None if states is None else dict(states)
        self.start = int(start)
        self.snapshot = snapshot
        self.recorded: dict[str, list] = {}
        self.keep_trajectory = trajectory
        self.trajectory: dict[str, np.ndarray] = {}

    def shifted(self, k: int) -> EWMRunner:
        """The same runner for inputs that start ``k <= start`` positions later (a suffix of the
        series that still holds every position the EWMs run over); records into this runner."""
        if k == 0:
            return self
        if not 0 < k <= self.start or self.keep_trajectory:
            raise ValueError(f"EWMRunner: cannot shift by {k} (start {self.start})")
        out = EWMRunner(self.states, self.start - k, None if self.snapshot is None else self.snapshot - k)
        out.recorded = self.recorded
        return out

    def mean(self, key: str, x: np.ndarray, alpha: float, min_periods: int) -> np.ndarray:
        """``pd.Series(x).ewm(alpha=alpha, adjust=False, min_periods=min_periods).mean()``, resumable."""
        if key in self.recorded:
            raise ValueError(f"EWMRunner: key {key!r} used twice")
        x = as_f64(x)
        rows = _rows(x) if x.size else np.zeros((1, 0))
        if self.states is None:
            st = np.array([_fresh_ewm_state()] * rows.shape[0])
        elif key in self.states:
            st = np.array(np.broadcast_to(np.asarray(self.states[key], dtype=np.float64), (rows.shape[0], 3)))
        else:
            raise KeyError(f"EWMRunner: no stored state for {key!r}; stored: {sorted(self.states)}")
        n = rows.shape[1]
        out = np.full(rows.shape, np.nan)
        snap = n if self.snapshot is None else min(self.snapshot, n)
        minp = float(max(int(min_periods), 1))
        traj = np.full((rows.shape[0], n if self.keep_trajectory else 0, 3), np.nan)
        if self.start < snap:
            run = slice(self.start, snap)
            _ewm_kernel(rows[:, run], float(alpha), minp, st, out[:, run], traj[:, run])
        self.recorded[key] = [float(v) for v in st[0]] if st.shape[0] == 1 else st.copy()
        if snap < n:
            _ewm_kernel(rows[:, snap:], float(alpha), minp, st, out[:, snap:], traj[:, snap:])
        if self.keep_trajectory:
            self.trajectory[key] = traj[0]
        return out.reshape(x.shape)


def lagged(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` lagged by ``k >= 1`` positions along the last axis (NaN in front)."""
    out = np.full_like(x, np.nan)
    out[..., k:] = x[..., :-k]
    return out


def pad_front(values: np.ndarray, n_total: int) -> np.ndarray:
    out = np.full((*values.shape[:-1], n_total), np.nan)
    out[..., n_total - values.shape[-1] :] = values
    return out
