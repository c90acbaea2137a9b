"""Compute the 44 catalog features from canonical OHLCV bars, causally.

Indicators come from ``ta`` 0.11 (always ``fillna=False``) where ``ta`` is causal, NaN-honest and
fast. Checked in ta's source and avoided: TRIX, KST, Vortex (``shift(fill_value=full-sample mean)``),
DPO (full-sample mean fill), Ichimoku (``visual=True`` shifts forward) and anything with
``fillna=True`` (``bfill``). Re-implemented here with ta's formula, vectorised:
ADX/DI and ATR (ta loops in Python and emits 0 instead of NaN during warm-up, so warm-up rows would
not be marked), CCI, Aroon and MFI (ta uses ``rolling().apply`` with a Python callback: 15 s on
631k bars). Every window is trailing and every recursion runs forward, so a row depends on its
prefix only (tested by truncation invariance). Degenerate windows (e.g. a flat 14-bar range) give
NaN, never a filled value; infinities are turned into NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from ta.momentum import (
    RSIIndicator,
    StochasticOscillator,
    StochRSIIndicator,
    TSIIndicator,
    UltimateOscillator,
    WilliamsRIndicator,
)
from ta.trend import MACD, EMAIndicator, SMAIndicator
from ta.volatility import BollingerBands
from ta.volume import ChaikinMoneyFlowIndicator

from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.market.bars import BAR_COLUMNS

#: Leading rows that can hold NaN because a window is not yet full (the longest lookback is 288
#: bars: ``logret_288`` and ``rv_288``). Rows ``>= WARMUP_BARS`` are complete on clean bars.
WARMUP_BARS: int = 288

_LN2 = float(np.log(2.0))


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[k:] = x[:-k]
    return out


def _wilder(x: pd.Series, n: int) -> pd.Series:
    """Wilder's smoothing (EMA with alpha = 1/n), NaN until ``n`` observations."""
    return x.ewm(alpha=1.0 / n, adjust=False, min_periods=n).mean()


def _window_view(x: np.ndarray, n: int) -> np.ndarray:
    return sliding_window_view(x, n)


def _pad_front(values: np.ndarray, n_total: int) -> np.ndarray:
    out = np.full(n_total, np.nan)
    out[n_total - len(values) :] = values
    return out


def _true_range(h: np.ndarray, low: np.ndarray, c_prev: np.ndarray) -> np.ndarray:
    """True range; NaN on the first bar (no previous close)."""
    return np.maximum(h - low, np.maximum(np.abs(h - c_prev), np.abs(low - c_prev)))


def wilder_adx(h: np.ndarray, low: np.ndarray, c: np.ndarray, n: int = 14) -> tuple[np.ndarray, ...]:
    """ADX, +DI, -DI with Wilder smoothing (same DM rules as ``ta.trend.ADXIndicator``)."""
    up = h - _shift(h, 1)
    down = _shift(low, 1) - low
    pdm = np.where((up > down) & (up > 0), up, 0.0)
    ndm = np.where((down > up) & (down > 0), down, 0.0)
    pdm[0] = ndm[0] = np.nan
    tr = _true_range(h, low, _shift(c, 1))
    s_tr = _wilder(pd.Series(tr), n).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        di_pos = 100.0 * _wilder(pd.Series(pdm), n).to_numpy() / s_tr
        di_neg = 100.0 * _wilder(pd.Series(ndm), n).to_numpy() / s_tr
        total = di_pos + di_neg
        dx = np.where(total > 0, 100.0 * np.abs(di_pos - di_neg) / np.where(total > 0, total, 1.0), 0.0)
    dx[np.isnan(total)] = np.nan
    adx = _wilder(pd.Series(dx), n).to_numpy()
    return adx, di_pos, di_neg


def _aroon(x: np.ndarray, n: int, up: bool) -> np.ndarray:
    """ta's Aroon: ``argmax`` (first occurrence) over the last ``n + 1`` bars / n x 100."""
    view = _window_view(x, n + 1)
    idx = view.argmax(axis=1) if up else view.argmin(axis=1)
    return _pad_front(idx.astype(np.float64) / n * 100, len(x))


def _cci(h: np.ndarray, low: np.ndarray, c: np.ndarray, n: int = 20, constant: float = 0.015) -> np.ndarray:
    """ta's CCI formula with the mean absolute deviation computed on a sliding window view."""
    tp = (h + low + c) / 3.0
    sma = pd.Series(tp).rolling(n, min_periods=n).mean().to_numpy()
    view = _window_view(tp, n)
    mad = np.abs(view - view.mean(axis=1, keepdims=True)).mean(axis=1)
    return (tp - sma) / (constant * _pad_front(mad, len(tp)))


def _mfi(h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, n: int = 14) -> np.ndarray:
    """ta's MFI formula with rolling sums (the first bar has no direction: NaN)."""
    tp = (h + low + c) / 3.0
    tp_prev = _shift(tp, 1)
    up_down = np.where(tp > tp_prev, 1.0, np.where(tp < tp_prev, -1.0, 0.0))
    up_down[0] = np.nan
    mfr = tp * v * up_down
    pos = np.where(mfr >= 0, mfr, 0.0)
    neg = np.where(mfr < 0, -mfr, 0.0)
    pos[np.isnan(mfr)] = neg[np.isnan(mfr)] = np.nan  # np.where turned NaN into 0
    pos = pd.Series(pos).rolling(n, min_periods=n).sum().to_numpy()
    neg = pd.Series(neg).rolling(n, min_periods=n).sum().to_numpy()
    return 100.0 - 100.0 / (1.0 + pos / neg)


def _check_bars(bars: pd.DataFrame) -> None:
    missing = [col for col in BAR_COLUMNS if col not in bars.columns]
    if missing:
        raise ValueError(f"compute_features: bars lack column(s) {missing}; expected {list(BAR_COLUMNS)}")


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The feature table: ``timestamp``, the 44 features (float64, catalog order) and ``warmup``.

    ``warmup`` is True on the first ``WARMUP_BARS`` rows, where some window is not yet full; those
    NaNs are kept, never back-filled. Row ``t`` depends on ``bars[: t + 1]`` only.
    """
    _check_bars(bars)
    n = len(bars)
    o, h, low, c, v = (
        bars[col].to_numpy(dtype=np.float64) for col in ("open", "high", "low", "close", "volume")
    )
    cs, hs, ls, vs = (pd.Series(x) for x in (c, h, low, v))
    f: dict[str, np.ndarray] = {}
    if n < 2:  # sliding windows need at least one full window; too short for any feature
        return _assemble(bars, {name: np.full(n, np.nan) for name in FEATURE_NAMES})

    with np.errstate(divide="ignore", invalid="ignore"):
        # returns
        for k in (1, 3, 12, 48, 96, 288):
            f[f"logret_{k}"] = np.log(c / _shift(c, k)) if k < n else np.full(n, np.nan)
        f["logret_oc"] = np.log(c / o)

        # trend
        f["close_sma_10"] = c / SMAIndicator(cs, 10, fillna=False).sma_indicator().to_numpy() - 1.0
        f["close_sma_50"] = c / SMAIndicator(cs, 50, fillna=False).sma_indicator().to_numpy() - 1.0
        f["close_ema_100"] = c / EMAIndicator(cs, 100, fillna=False).ema_indicator().to_numpy() - 1.0
        macd = MACD(cs, window_slow=26, window_fast=12, window_sign=9, fillna=False)
        f["macd_norm"] = macd.macd().to_numpy() / c
        f["macd_hist_norm"] = macd.macd_diff().to_numpy() / c
        f["adx_14"], f["di_pos_14"], f["di_neg_14"] = wilder_adx(h, low, c, 14)
        f["aroon_up_25"] = _aroon(h, 25, up=True) if n > 25 else np.full(n, np.nan)
        f["aroon_down_25"] = _aroon(low, 25, up=False) if n > 25 else np.full(n, np.nan)

        # momentum
        f["rsi_14"] = RSIIndicator(cs, 14, fillna=False).rsi().to_numpy()
        f["stoch_rsi_14"] = StochRSIIndicator(cs, 14, 3, 3, fillna=False).stochrsi().to_numpy()
        stoch = StochasticOscillator(hs, ls, cs, window=14, smooth_window=3, fillna=False)
        f["stoch_k_14"] = stoch.stoch().to_numpy()
        f["stoch_d_14"] = stoch.stoch_signal().to_numpy()
        f["williams_r_14"] = WilliamsRIndicator(hs, ls, cs, lbp=14, fillna=False).williams_r().to_numpy()
        f["cci_20"] = _cci(h, low, c, 20) if n >= 20 else np.full(n, np.nan)
        f["tsi_25_13"] = TSIIndicator(cs, window_slow=25, window_fast=13, fillna=False).tsi().to_numpy()
        f["ultimate_osc"] = (
            UltimateOscillator(hs, ls, cs, 7, 14, 28, fillna=False).ultimate_oscillator().to_numpy()
        )

        # volatility
        c_prev = _shift(c, 1)
        f["atr_14_ratio"] = _wilder(pd.Series(_true_range(h, low, c_prev)), 14).to_numpy() / c
        bb = BollingerBands(cs, window=20, window_dev=2, fillna=False)
        f["bb_pctb_20"] = bb.bollinger_pband().to_numpy()
        f["bb_width_20"] = bb.bollinger_wband().to_numpy() / 100.0
        r1 = pd.Series(f["logret_1"])
        for k in (12, 48, 288):
            f[f"rv_{k}"] = r1.rolling(k, min_periods=k).std().to_numpy()
        hl = np.log(h / low)
        f["parkinson_24"] = np.sqrt(
            pd.Series(hl * hl).rolling(24, min_periods=24).mean().to_numpy() / (4 * _LN2)
        )
        co = np.log(c / o)
        gk_bar = 0.5 * hl * hl - (2 * _LN2 - 1.0) * co * co
        gk = pd.Series(gk_bar).rolling(24, min_periods=24).mean().to_numpy()
        f["garman_klass_24"] = np.sqrt(np.maximum(gk, 0.0))
        f["hl_range"] = hl

        # volume
        vmean48 = vs.rolling(48, min_periods=48).mean().to_numpy()
        vstd48 = vs.rolling(48, min_periods=48).std().to_numpy()
        f["volume_z_48"] = (v - vmean48) / vstd48
        f["volume_ratio_288"] = v / vs.rolling(288, min_periods=288).mean().to_numpy()
        signed_v = np.where(c < c_prev, -v, v)  # ta's OBV increment
        signed_v[0] = np.nan
        obv_chg = pd.Series(signed_v).rolling(24, min_periods=24).sum().to_numpy()
        f["obv_change_24"] = np.clip(obv_chg / vs.rolling(24, min_periods=24).sum().to_numpy(), -1.0, 1.0)
        f["mfi_14"] = _mfi(h, low, c, v, 14)
        f["cmf_20"] = (
            ChaikinMoneyFlowIndicator(hs, ls, cs, vs, window=20, fillna=False).chaikin_money_flow().to_numpy()
        )
        f["volume_ret_corr_48"] = r1.abs().rolling(48, min_periods=48).corr(vs).to_numpy()

        # calendar (the bar's close time, UTC)
        ts = pd.DatetimeIndex(bars["timestamp"])
        if ts.tz is not None:
            ts = ts.tz_convert("UTC")
        hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60.0 + ts.second.to_numpy() / 3600.0
        dow = ts.dayofweek.to_numpy().astype(np.float64)
        f["hour_sin"] = np.sin(2 * np.pi * hour / 24.0)
        f["hour_cos"] = np.cos(2 * np.pi * hour / 24.0)
        f["dow_sin"] = np.sin(2 * np.pi * dow / 7.0)
        f["dow_cos"] = np.cos(2 * np.pi * dow / 7.0)
    return _assemble(bars, f)


def _assemble(bars: pd.DataFrame, f: dict[str, np.ndarray]) -> pd.DataFrame:
    n = len(bars)
    cols: dict[str, object] = {"timestamp": bars["timestamp"].to_numpy()}
    for name in FEATURE_NAMES:
        x = np.asarray(f[name], dtype=np.float64)
        x[np.isinf(x)] = np.nan
        cols[name] = x
    cols["warmup"] = np.arange(n) < WARMUP_BARS
    out = pd.DataFrame(cols)
    out["timestamp"] = bars["timestamp"].reset_index(drop=True)
    return out
