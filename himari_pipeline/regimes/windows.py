"""Trailing-window percentile rank and maximum, exact, along the last axis (numba).

``rolling_pct_rank`` is pandas' ``rolling(n, min_periods).rank(pct=True)`` (ties averaged, NaN
skipped, NaN where the value itself is NaN) and ``rolling_peak`` pandas' ``rolling(n,
min_periods).max()`` (NaN skipped). Both are built from integer counts and selections, so two
algorithms give the same bits and each input gets the cheaper one:

* a long series computed at many positions is swept once: a Fenwick tree of value codes counts the
  window's values below and up to the current one (O(log n) a bar), a monotonic deque keeps the
  window's maximum (O(1) a bar);
* a stack of windows (the every-row causality check) needs only their last positions: each is
  counted over its window directly.
"""

from __future__ import annotations

import numba
import numpy as np

#: Positions x window length above which a 1-D series is swept instead of counted window by window.
SWEEP_ABOVE: int = 200_000


@numba.njit(cache=True)
def _pct_rank(less: int, less_equal: int, nobs: int) -> float:  # pragma: no cover - numba
    # pandas' average rank over the count: ((rank_min + rank_max) / 2) / nobs, exact in float64
    return ((less + 1) + less_equal) * 0.5 / nobs


@numba.njit(cache=True)
def _rank_counted(x, n, minp, first, out):  # pragma: no cover - numba
    for r in range(x.shape[0]):
        for t in range(first, x.shape[1]):
            v = x[r, t]
            if np.isnan(v):
                continue
            nobs = 0
            less = 0
            less_equal = 0
            for j in range(max(0, t - n + 1), t + 1):
                y = x[r, j]
                if not np.isnan(y):
                    nobs += 1
                    if y < v:
                        less += 1
                    if y <= v:
                        less_equal += 1
            if nobs >= minp:
                out[r, t] = _pct_rank(less, less_equal, nobs)


@numba.njit(cache=True)
def _rank_swept(codes, n, minp, first, out):  # pragma: no cover - numba
    # codes[t]: 1-based rank of x[t] among the distinct values (equal values share a code), 0 = NaN
    m = 0
    for c in codes:
        m = max(m, c)
    tree = np.zeros(m + 1, dtype=np.int64)
    nobs = 0
    for t in range(len(codes)):
        for c, d in ((codes[t], 1), (codes[t - n] if t >= n else 0, -1)):
            if c > 0:
                nobs += d
                i = c
                while i <= m:
                    tree[i] += d
                    i += i & -i
        c = codes[t]
        if t < first or c == 0 or nobs < minp:
            continue
        less = 0
        i = c - 1
        while i > 0:
            less += tree[i]
            i -= i & -i
        less_equal = 0
        i = c
        while i > 0:
            less_equal += tree[i]
            i -= i & -i
        out[t] = _pct_rank(less, less_equal, nobs)


@numba.njit(cache=True)
def _peak_counted(x, n, minp, first, out):  # pragma: no cover - numba
    for r in range(x.shape[0]):
        for t in range(first, x.shape[1]):
            m = -np.inf
            nobs = 0
            for j in range(max(0, t - n + 1), t + 1):
                y = x[r, j]
                if not np.isnan(y):
                    nobs += 1
                    if y > m:
                        m = y
            if nobs >= minp:
                out[r, t] = m


@numba.njit(cache=True)
def _peak_swept(x, n, minp, first, out):  # pragma: no cover - numba
    dq = np.empty(len(x), dtype=np.int64)  # indices of a decreasing run of the window's values
    head = 0
    tail = 0
    nobs = 0
    for t in range(len(x)):
        if t >= n and not np.isnan(x[t - n]):
            nobs -= 1
        while tail > head and dq[head] <= t - n:
            head += 1
        if not np.isnan(x[t]):
            nobs += 1
            while tail > head and x[dq[tail - 1]] <= x[t]:
                tail -= 1
            dq[tail] = t
            tail += 1
        if t >= first and nobs >= minp and tail > head:
            out[t] = x[dq[head]]


def _codes(x: np.ndarray) -> np.ndarray:
    """1-based codes of ``x``'s distinct values in increasing order (0 for NaN)."""
    codes = np.zeros(len(x), dtype=np.int64)
    ok = ~np.isnan(x)
    codes[ok] = np.unique(x[ok], return_inverse=True)[1].ravel() + 1
    return codes


def _apply(counted, swept, x: np.ndarray, n: int, minp: int, first: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if not x.size:
        return out
    if x.ndim == 1 and (len(x) - first) * n > SWEEP_ABOVE:
        swept(x, int(n), int(minp), int(first), out)
    else:
        rows = x.reshape(-1, x.shape[-1])
        counted(rows, int(n), int(minp), int(first), out.reshape(rows.shape))
    return out


def rolling_pct_rank(x: np.ndarray, n: int, minp: int, first: int = 0) -> np.ndarray:
    """Percentile rank of each value among the trailing ``n`` (positions ``>= first``; NaN before)."""
    return _apply(_rank_counted, lambda a, *args: _rank_swept(_codes(a), *args), x, n, minp, first)


def rolling_peak(x: np.ndarray, n: int, minp: int, first: int = 0) -> np.ndarray:
    """Maximum of the trailing ``n`` values, NaN skipped (positions ``>= first``; NaN before)."""
    return _apply(_peak_counted, _peak_swept, x, n, minp, first)
