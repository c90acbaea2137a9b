"""Every row of a data table recomputed from the bars up to it alone, cheaply.

Row ``t`` of ``features`` must equal what the feature code gives on ``bars[: t + 1]``: a look-ahead
confined to one row shows up only at that one cut point, so every cut is tested. Recomputing the
whole prefix per row would cost O(n^2); instead each row gets the shortest window of bars that
fully determines it, plus the recursions' states before that window:

* windowed quantities (sums, variances, ranks, extrema) depend on the window's values alone;
* exponential recursions resume from their state before the window (``EWMRunner`` states, the
  filter state of the EKF, the regime state machine), which the recursion reached on earlier bars;
* the regimes' ``vol_pct`` ranks row ``t``'s own ``vol`` among the ``vol`` of the rows before it,
  values that are themselves a column of the table, each checked at its own row.

The states and earlier values come from one pass of the same code over all bars: a look-ahead in
them shows at the row where it arises, because that row is recomputed from its own window.

The windows of all cuts are stacked into 2-D arrays (one window per row) and go through the *same*
code as the table itself in a few vectorized calls, so nothing is re-implemented and the last
position of each window sees no bar after its cut. The rows are bit-identical to the stored table
when the code is causal; :func:`himari_pipeline.causality.check_every_row` compares them.

The EKF is a recursion over feature rows: :func:`denoised_every_row` filters each row from the
state after the previous ones. On six years of hourly bars (52,608 rows) the three tables take
seconds each (``benchmarks/bench_truncation.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from himari_pipeline.bar_tail import EWM_MARGIN
from himari_pipeline.ekf import vectorized as ekf_vectorized
from himari_pipeline.ekf.model import EKFParams
from himari_pipeline.features import compute as features_compute
from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.features.compute import EWMRunner
from himari_pipeline.regimes import detect as regimes_detect
from himari_pipeline.regimes.detect import RegimeParams
from himari_pipeline.vocabulary import WARMUP_ID

#: Bars in a feature window: the longest lookback plus the bars before the EWMs resume.
FEATURE_WINDOW: int = features_compute.FEATURE_LOOKBACK + EWM_MARGIN
#: Cut points recomputed per vectorized call (bounds memory: ~0.3 MB per array per 128 cuts).
CHUNK: int = 512


def _feature_rows(cols: dict[str, np.ndarray], states: dict | None, start: int) -> dict[str, np.ndarray]:
    """Feature values at the last position of each window (``cols`` 1-D: one window, 2-D: a stack);
    window statistics are computed only where the last position reads them."""
    ewm = features_compute.EWMRunner(states, start)
    last = cols["close"].shape[-1] - 1
    f = features_compute.feature_arrays(cols, ewm, first=max(last - features_compute.WINDOW_CHAIN, 0))
    return {name: np.asarray(f[name], dtype=np.float64)[..., -1] for name in FEATURE_NAMES}


def features_every_row(bars: pd.DataFrame, start: int = 0) -> pd.DataFrame:
    """Feature rows ``start..n-1`` of ``bars``, row ``t`` computed from ``bars[: t + 1]`` only.

    Rows before ``FEATURE_WINDOW - 1`` are computed on their whole prefix (fresh EWMs); later rows
    on their last ``FEATURE_WINDOW`` bars, the EWMs resumed ``EWM_MARGIN`` bars into the window
    from their states on the bars before it (from one pass over the bars).
    """
    cols = features_compute.bar_arrays(bars)
    n = len(bars)
    out = np.full((max(n - start, 0), len(FEATURE_NAMES)), np.nan)
    for t in range(start, min(FEATURE_WINDOW - 1, n)):  # whole prefixes
        row = _feature_rows({k: a[: t + 1] for k, a in cols.items()}, None, 0)
        out[t - start] = [row[name] for name in FEATURE_NAMES]
    first = max(start, FEATURE_WINDOW - 1)
    if first < n:
        ewm = features_compute.EWMRunner(trajectory=True)
        features_compute.feature_arrays(cols, ewm)  # the states before every bar
        windows = {k: sliding_window_view(a, FEATURE_WINDOW) for k, a in cols.items()}
        for lo in range(first, n, CHUNK):
            cuts = np.arange(lo, min(lo + CHUNK, n))
            w0 = cuts - (FEATURE_WINDOW - 1)  # each window's first bar
            chunk = {k: np.ascontiguousarray(w[w0]) for k, w in windows.items()}
            states = {key: traj[w0 + EWM_MARGIN] for key, traj in ewm.trajectory.items()}
            rows = _feature_rows(chunk, states, EWM_MARGIN)
            out[cuts - start] = np.column_stack([rows[name] for name in FEATURE_NAMES])
    out[np.isinf(out)] = np.nan
    table = pd.DataFrame(out, columns=list(FEATURE_NAMES))
    table.insert(0, "timestamp", bars["timestamp"].iloc[start:].reset_index(drop=True))
    table["warmup"] = np.arange(start, n) < features_compute.WARMUP_BARS
    return table


def regimes_every_row(
    bars: pd.DataFrame, timeframe: str, params: RegimeParams | None = None, start: int = 0
) -> pd.DataFrame:
    """Regime rows ``start..n-1``, row ``t`` from ``bars[: t + 1]`` only (see the module doc).

    Indicators at ``t`` come from the last bars their windows need (vol, peak; ADX's EWMs resumed
    ``EWM_MARGIN`` bars before ``t``), ``vol_pct`` ranks ``vol[t]`` among the ``vol`` of the bars
    before (each checked at its own row); the label and confidence from the state machine's
    ``(label, held)`` before ``t`` and those indicators, one row at a time.
    """
    params = params or RegimeParams()
    c, h, low = (bars[k].to_numpy(dtype=np.float64) for k in ("close", "high", "low"))
    n = len(bars)
    w = params.window_bars(timeframe)
    width = max(w["vol"] + 1, w["dd"], EWM_MARGIN + 1)
    ewm = EWMRunner(trajectory=True)  # one pass: the states before every bar, and every bar's vol
    full = regimes_detect.indicator_arrays(c, h, low, timeframe, params, ewm)
    before = np.zeros((n, 2), dtype=np.int64)
    regimes_detect.label_resumable(full["vol_pct"], full["adx"], full["drawdown"], params, before=before)
    history = np.concatenate(
        [np.full(w["pct"] - 1, np.nan), full["vol"]]
    )  # vol_before of row t: [t, t + pct - 1)
    vol_windows = sliding_window_view(history, w["pct"] - 1)
    ind = {k: np.full(max(n - start, 0), np.nan) for k in ("vol", "vol_pct", "adx", "drawdown")}
    for t in range(start, min(width - 1, n)):  # whole prefixes
        bars_t = (c[: t + 1], h[: t + 1], low[: t + 1])
        g = max(t + 1 - EWM_MARGIN, 0)  # ADX's EWMs resumed before row g (fresh at 0)
        ewm_t = EWMRunner({key: traj[g] for key, traj in ewm.trajectory.items()}, g)
        row = regimes_detect.indicator_arrays(
            *bars_t, timeframe, params, ewm_t, first=t, vol_before=vol_windows[t]
        )
        for k in ind:
            ind[k][t - start] = row[k][-1]
    first = max(start, width - 1)
    windows = [sliding_window_view(a, width) if n >= width else None for a in (c, h, low)]
    step = max(CHUNK * 300 // (width + w["pct"]), 1)  # ~ the feature chunks' memory
    for lo in range(first, n, step):
        cuts = np.arange(lo, min(lo + step, n))
        w0 = cuts - (width - 1)
        wc, wh, wl = (np.ascontiguousarray(x[w0]) for x in windows)
        states = {key: traj[w0 + width - EWM_MARGIN] for key, traj in ewm.trajectory.items()}
        rows = regimes_detect.indicator_arrays(
            wc,
            wh,
            wl,
            timeframe,
            params,
            EWMRunner(states, width - EWM_MARGIN),
            first=width - 1,
            vol_before=np.ascontiguousarray(vol_windows[cuts]),
        )
        for k in ind:
            ind[k][cuts - start] = rows[k][:, -1]
    ids = np.full(max(n - start, 0), WARMUP_ID, dtype=np.int8)
    for i, t in enumerate(range(start, n)):  # the state machine, one row at a time
        vp, ax, dd = (ind[k][i : i + 1] for k in ("vol_pct", "adx", "drawdown"))
        ids[i] = regimes_detect.label_resumable(vp, ax, dd, params, *(int(x) for x in before[t]))[0][0]
    # the confidence is elementwise; one cut per row, so no cut sees another's values
    cols = [ids[:, None]] + [ind[k][:, None] for k in ("vol_pct", "adx", "drawdown")]
    conf = np.where(ids >= 0, regimes_detect.regime_confidence(*cols, params)[:, 0], np.nan)
    table = pd.DataFrame({"confidence": conf, **ind})
    table.insert(0, "regime_id", ids)
    table.insert(0, "timestamp", bars["timestamp"].iloc[start:].reset_index(drop=True))
    return table


def denoised_every_row(features: pd.DataFrame, params: EKFParams, start: int = 0) -> pd.DataFrame:
    """EKF-denoised rows ``start..n-1`` of a feature table, each filtered from its feature row alone
    and the filter state after the previous rows (the append path of ``features_denoised``)."""
    names = list(params.names)
    x = features[names].to_numpy(dtype=np.float64)
    state = ekf_vectorized.ekf_filter(x[:start], params)[1] if start > 0 else None
    out = np.empty((max(len(x) - start, 0), len(names)))
    for t in range(start, len(x)):
        row, state = ekf_vectorized.ekf_filter(x[t : t + 1], params, state)
        out[t - start] = row[0]
    table = features.iloc[start:].reset_index(drop=True).copy()
    table[names] = out
    return table
