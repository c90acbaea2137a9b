"""Compute the 44 catalog features from canonical OHLCV bars, causally and exactly append-ably.

Formulas follow ``ta`` 0.11 (``fillna=False``). Checked in ta's source and avoided: TRIX, KST, Vortex
(``shift(fill_value=full-sample mean)``), DPO (full-sample mean fill), Ichimoku (``visual=True``
shifts forward) and anything with ``fillna=True`` (``bfill``). Stochastic %K and Williams %R are
ta's expressions over window minima/maxima, bit-identical to ``ta`` (tested) without its pandas
overhead, which matters because the truncation check recomputes every row from its own prefix.

Every feature is built from the blocks of :mod:`himari_pipeline.features.kernels` (window-only
rolling statistics, resumable EWMs for EMA, MACD, RSI, TSI and Wilder's ATR/ADX, exact min/max and
argmax selections), so a row can be continued from a stored tail bit for bit
(:mod:`himari_pipeline.features.append`), and the same code runs on a stack of bar windows, one per
row, for the every-row causality check (:mod:`himari_pipeline.every_row`).

Every window is trailing and every recursion runs forward, so a row depends on its prefix only
(tested by truncation invariance). Degenerate windows (e.g. a flat 14-bar range) give NaN, never a
filled value; infinities are turned into NaN.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.features.kernels import (  # re-exported: the building blocks of the features
    EWMRunner,
    as_f64,
    ewm_alpha,
    lagged,
    pad_front,
    rolling_corr,
    rolling_mad,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_std,
    rolling_sum,
    rolling_var,
    sliding,
)
from himari_pipeline.market.bars import BAR_COLUMNS

#: Leading rows that can hold NaN because a window is not yet full (the longest lookback is 288
#: bars: ``logret_288`` and ``rv_288``). Rows ``>= WARMUP_BARS`` are complete on clean bars.
WARMUP_BARS: int = 288

#: A feature at position ``t`` reads window statistics at positions ``t - WINDOW_CHAIN .. t``
#: (``stoch_d_14`` averages three ``stoch_k_14`` values).
WINDOW_CHAIN: int = 2

#: Bars a feature row at ``t`` may reach back (``t - FEATURE_LOOKBACK`` .. ``t``) when EWM states are
#: carried: the 288-bar windows plus the one-bar differences inside them.
FEATURE_LOOKBACK: int = WARMUP_BARS + 1

_LN2 = float(np.log(2.0))


def _wilder(x: np.ndarray, n: int, ewm: EWMRunner, key: str) -> np.ndarray:
    """Wilder's smoothing (EMA with alpha = 1/n), NaN until ``n`` observations."""
    return ewm.mean(key, x, ewm_alpha(alpha=1.0 / n), n)


def _ema(x: np.ndarray, n: int, ewm: EWMRunner, key: str) -> np.ndarray:
    """ta's EMA: span ``n``, ``min_periods = n``."""
    return ewm.mean(key, x, ewm_alpha(span=n), n)


# --------------------------------------------------------------------------------------------------
# Indicators
# --------------------------------------------------------------------------------------------------


def _true_range(h: np.ndarray, low: np.ndarray, c_prev: np.ndarray) -> np.ndarray:
    """True range; NaN on the first bar (no previous close)."""
    return np.maximum(h - low, np.maximum(np.abs(h - c_prev), np.abs(low - c_prev)))


def wilder_adx(
    h: np.ndarray,
    low: np.ndarray,
    c: np.ndarray,
    n: int = 14,
    ewm: EWMRunner | None = None,
    key: str = "adx",
) -> tuple[np.ndarray, ...]:
    """ADX, +DI, -DI with Wilder smoothing (same DM rules as ``ta.trend.ADXIndicator``).

    ``ewm`` (default: a fresh :class:`EWMRunner`) runs the four smoothings under keys ``key + "_..."``.
    """
    ewm = EWMRunner() if ewm is None else ewm
    up = h - lagged(h, 1)
    down = lagged(low, 1) - low
    pdm = np.where((up > down) & (up > 0), up, 0.0)
    ndm = np.where((down > up) & (down > 0), down, 0.0)
    pdm[..., 0] = ndm[..., 0] = np.nan
    tr = _true_range(h, low, lagged(c, 1))
    s_tr = _wilder(tr, n, ewm, f"{key}_tr")
    with np.errstate(divide="ignore", invalid="ignore"):
        di_pos = 100.0 * _wilder(pdm, n, ewm, f"{key}_pdm") / s_tr
        di_neg = 100.0 * _wilder(ndm, n, ewm, f"{key}_ndm") / s_tr
        total = di_pos + di_neg
        dx = np.where(total > 0, 100.0 * np.abs(di_pos - di_neg) / np.where(total > 0, total, 1.0), 0.0)
    dx[np.isnan(total)] = np.nan
    adx = _wilder(dx, n, ewm, f"{key}_dx")
    return adx, di_pos, di_neg


def _aroon(x: np.ndarray, n: int, up: bool, first: int = 0) -> np.ndarray:
    """ta's Aroon: ``argmax`` (first occurrence) over the last ``n + 1`` bars / n x 100."""
    view = sliding(x, n + 1, first)
    idx = view.argmax(axis=-1) if up else view.argmin(axis=-1)
    return pad_front(idx.astype(np.float64) / n * 100, x.shape[-1])


def _cci(h, low, c, n: int = 20, constant: float = 0.015, first: int = 0) -> np.ndarray:
    """ta's CCI formula: (typical price - its SMA) / (constant x mean absolute deviation)."""
    tp = (h + low + c) / 3.0
    return (tp - rolling_mean(tp, n, first)) / (constant * rolling_mad(tp, n, first))


def _mfi(h, low, c, v, n: int = 14, first: int = 0) -> np.ndarray:
    """ta's MFI formula with rolling sums (the first bar has no direction: NaN)."""
    tp = (h + low + c) / 3.0
    tp_prev = lagged(tp, 1)
    up_down = np.where(tp > tp_prev, 1.0, np.where(tp < tp_prev, -1.0, 0.0))
    up_down[..., 0] = np.nan
    mfr = tp * v * up_down
    pos = np.where(mfr >= 0, mfr, 0.0)
    neg = np.where(mfr < 0, -mfr, 0.0)
    pos[np.isnan(mfr)] = neg[np.isnan(mfr)] = np.nan  # np.where turned NaN into 0
    return 100.0 - 100.0 / (1.0 + rolling_sum(pos, n, first) / rolling_sum(neg, n, first))


def _rsi(c: np.ndarray, c_prev: np.ndarray, n: int, ewm: EWMRunner) -> np.ndarray:
    """ta's RSI: Wilder-smoothed gains / losses (the first bar's NaN difference counts as 0)."""
    diff = c - c_prev
    up = np.where(diff > 0, diff, 0.0)
    down = -np.where(diff < 0, diff, 0.0)
    emaup = ewm.mean("rsi_up", up, ewm_alpha(alpha=1.0 / n), n)
    emadn = ewm.mean("rsi_down", down, ewm_alpha(alpha=1.0 / n), n)
    return np.where(emadn == 0, 100.0, 100.0 - 100.0 / (1.0 + emaup / emadn))


def _tsi(c: np.ndarray, c_prev: np.ndarray, slow: int, fast: int, ewm: EWMRunner) -> np.ndarray:
    """ta's TSI: doubly smoothed momentum over doubly smoothed absolute momentum, x 100."""
    diff = c - c_prev
    smoothed = _ema(_ema(diff, slow, ewm, "tsi_slow"), fast, ewm, "tsi_fast")
    smoothed_abs = _ema(_ema(np.abs(diff), slow, ewm, "tsi_abs_slow"), fast, ewm, "tsi_abs_fast")
    return smoothed / smoothed_abs * 100.0


def _ultimate(h, low, c, c_prev, first: int = 0) -> np.ndarray:
    """ta's Ultimate Oscillator (7, 14, 28; weights 4, 2, 1)."""
    tr = np.fmax(h - low, np.fmax(np.abs(h - c_prev), np.abs(low - c_prev)))  # pandas max skips NaN
    bp = c - np.minimum(low, c_prev)  # NaN on the first bar
    avg = [rolling_sum(bp, w, first) / rolling_sum(tr, w, first) for w in (7, 14, 28)]
    return 100.0 * (4.0 * avg[0] + 2.0 * avg[1] + 1.0 * avg[2]) / 7.0


def _check_bars(bars: pd.DataFrame) -> None:
    missing = [col for col in BAR_COLUMNS if col not in bars.columns]
    if missing:
        raise ValueError(f"compute_features: bars lack column(s) {missing}; expected {list(BAR_COLUMNS)}")


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The feature table: ``timestamp``, the 44 features (float64, catalog order) and ``warmup``.

    ``warmup`` is True on the first ``WARMUP_BARS`` rows, where some window is not yet full; those
    NaNs are kept, never back-filled. Row ``t`` depends on ``bars[: t + 1]`` only.
    """
    return compute_features_resumable(bars)[0]


def compute_features_resumable(
    bars: pd.DataFrame,
    ewm_states: Mapping[str, list[float]] | None = None,
    start: int = 0,
    snapshot: int | None = None,
    row_offset: int = 0,
) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """:func:`compute_features` with its EWM states exposed, the entry point for appending.

    The EWMs run over rows ``[start, n)`` from ``ewm_states`` (fresh when None) and their states
    just before row ``snapshot`` are returned. ``row_offset`` is the global index of ``bars``' first
    row (for the ``warmup`` flag). With the defaults this is exactly :func:`compute_features`.
    Rows before ``start + FEATURE_LOOKBACK`` of a resumed slice are incomplete; callers drop them.
    """
    f, recorded = feature_arrays_resumable(bars, ewm_states, start, snapshot)
    return _assemble(bars, f, row_offset), recorded


def feature_arrays_resumable(
    bars: pd.DataFrame,
    ewm_states: Mapping[str, list[float]] | None = None,
    start: int = 0,
    snapshot: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """The feature columns of :func:`compute_features_resumable` as arrays (before infinities become NaN)."""
    ewm = EWMRunner(ewm_states, start, snapshot)
    return feature_arrays(bar_arrays(bars), ewm), ewm.recorded


def bar_arrays(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """The inputs of :func:`feature_arrays`: OHLCV as float64 and ``ns`` (close time, int64 ns UTC)."""
    _check_bars(bars)
    cols = {k: bars[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")}
    cols["ns"] = pd.DatetimeIndex(pd.to_datetime(bars["timestamp"], utc=True)).asi8
    return cols


def feature_arrays(cols: Mapping[str, np.ndarray], ewm: EWMRunner, first: int = 0) -> dict[str, np.ndarray]:
    """Every feature along the last axis of the bar arrays ``cols`` (see :func:`bar_arrays`).

    A 1-D input is one series of bars; a 2-D input is a stack of series (one window of bars per row,
    each computed on its own, as the every-row causality check does). Infinities are kept here.
    ``first``: window statistics are computed at positions ``>= first`` only, which makes every
    feature exact at positions ``>= first + WINDOW_CHAIN`` (and saves work when only the last
    positions are wanted); 0 computes everything.
    """
    o, h, low, c, v = (as_f64(cols[k]) for k in ("open", "high", "low", "close", "volume"))
    n = c.shape[-1]
    f: dict[str, np.ndarray] = {}
    if n == 0:
        return {name: np.full(c.shape, np.nan) for name in FEATURE_NAMES}

    with np.errstate(divide="ignore", invalid="ignore"):
        c_prev = lagged(c, 1)
        # returns
        for k in (1, 3, 12, 48, 96, 288):
            f[f"logret_{k}"] = np.log(c / lagged(c, k)) if k < n else np.full(c.shape, np.nan)
        f["logret_oc"] = np.log(c / o)

        # trend
        f["close_sma_10"] = c / rolling_mean(c, 10, first=first) - 1.0
        f["close_sma_50"] = c / rolling_mean(c, 50, first=first) - 1.0
        f["close_ema_100"] = c / _ema(c, 100, ewm, "ema_100") - 1.0
        macd = _ema(c, 12, ewm, "macd_fast") - _ema(c, 26, ewm, "macd_slow")
        f["macd_norm"] = macd / c
        f["macd_hist_norm"] = (macd - _ema(macd, 9, ewm, "macd_signal")) / c
        f["adx_14"], f["di_pos_14"], f["di_neg_14"] = wilder_adx(h, low, c, 14, ewm, "adx")
        f["aroon_up_25"] = _aroon(h, 25, True, first) if n > 25 else np.full(c.shape, np.nan)
        f["aroon_down_25"] = _aroon(low, 25, False, first) if n > 25 else np.full(c.shape, np.nan)

        # momentum
        rsi = _rsi(c, c_prev, 14, ewm)
        f["rsi_14"] = rsi
        rsi_lo, rsi_hi = rolling_min(rsi, 14, first=first), rolling_max(rsi, 14, first=first)
        f["stoch_rsi_14"] = (rsi - rsi_lo) / (rsi_hi - rsi_lo)
        hh14, ll14 = rolling_max(h, 14, first=first), rolling_min(low, 14, first=first)
        stoch_k = 100 * (c - ll14) / (hh14 - ll14)  # ta's StochasticOscillator.stoch()
        f["stoch_k_14"] = stoch_k
        f["stoch_d_14"] = rolling_mean(stoch_k, 3, first=first)
        f["williams_r_14"] = -100 * (hh14 - c) / (hh14 - ll14)  # ta's WilliamsRIndicator.williams_r()
        f["cci_20"] = _cci(h, low, c, 20, first=first)
        f["tsi_25_13"] = _tsi(c, c_prev, 25, 13, ewm)
        f["ultimate_osc"] = _ultimate(h, low, c, c_prev, first)

        # volatility
        f["atr_14_ratio"] = _wilder(_true_range(h, low, c_prev), 14, ewm, "atr") / c
        mavg, mstd = rolling_mean(c, 20, first=first), rolling_std(c, 20, ddof=0, first=first)
        hband, lband = mavg + 2.0 * mstd, mavg - 2.0 * mstd
        f["bb_pctb_20"] = (c - lband) / np.where(hband != lband, hband - lband, np.nan)
        f["bb_width_20"] = (hband - lband) / mavg * 100.0 / 100.0
        r1 = f["logret_1"]
        for k in (12, 48, 288):
            f[f"rv_{k}"] = rolling_std(r1, k, first=first)
        hl = np.log(h / low)
        f["parkinson_24"] = np.sqrt(rolling_mean(hl * hl, 24, first=first) / (4 * _LN2))
        co = np.log(c / o)
        gk = rolling_mean(0.5 * hl * hl - (2 * _LN2 - 1.0) * co * co, 24, first=first)
        f["garman_klass_24"] = np.sqrt(np.maximum(gk, 0.0))
        f["hl_range"] = hl

        # volume
        f["volume_z_48"] = (v - rolling_mean(v, 48, first=first)) / rolling_std(v, 48, first=first)
        f["volume_ratio_288"] = v / rolling_mean(v, 288, first=first)
        signed_v = np.where(c < c_prev, -v, v)  # ta's OBV increment
        signed_v[..., 0] = np.nan
        f["obv_change_24"] = np.clip(
            rolling_sum(signed_v, 24, first=first) / rolling_sum(v, 24, first=first), -1.0, 1.0
        )
        f["mfi_14"] = _mfi(h, low, c, v, 14, first=first)
        mfv = ((c - low) - (h - c)) / (h - low)
        mfv = np.where(np.isnan(mfv), 0.0, mfv) * v  # ta: fillna(0) for a flat bar
        f["cmf_20"] = rolling_sum(mfv, 20, first=first) / rolling_sum(v, 20, first=first)
        f["volume_ret_corr_48"] = rolling_corr(np.abs(r1), v, 48, first=first)

        # calendar (the bar's close time, UTC), from integer nanoseconds (1970-01-01 was a Thursday)
        seconds = np.asarray(cols["ns"], dtype=np.int64) // 1_000_000_000
        hour = (seconds // 3600) % 24 + ((seconds // 60) % 60) / 60.0 + (seconds % 60) / 3600.0
        dow = ((seconds // 86400 + 3) % 7).astype(np.float64)
        f["hour_sin"] = np.sin(2 * np.pi * hour / 24.0)
        f["hour_cos"] = np.cos(2 * np.pi * hour / 24.0)
        f["dow_sin"] = np.sin(2 * np.pi * dow / 7.0)
        f["dow_cos"] = np.cos(2 * np.pi * dow / 7.0)
    return f


def _assemble(bars: pd.DataFrame, f: dict[str, np.ndarray], row_offset: int = 0) -> pd.DataFrame:
    n = len(bars)
    cols: dict[str, object] = {"timestamp": bars["timestamp"].reset_index(drop=True)}
    for name in FEATURE_NAMES:
        x = np.asarray(f[name], dtype=np.float64)
        x[np.isinf(x)] = np.nan
        cols[name] = x
    cols["warmup"] = row_offset + np.arange(n) < WARMUP_BARS
    return pd.DataFrame(cols)


__all__ = [
    "FEATURE_LOOKBACK",
    "WARMUP_BARS",
    "EWMRunner",
    "bar_arrays",
    "compute_features",
    "compute_features_resumable",
    "ewm_alpha",
    "feature_arrays",
    "feature_arrays_resumable",
    "lagged",
    "rolling_corr",
    "rolling_mad",
    "rolling_mean",
    "rolling_std",
    "rolling_sum",
    "rolling_var",
    "wilder_adx",
]
