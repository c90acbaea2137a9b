"""The catalog of the 44 causal, stationary features (names, groups, descriptions, bounds).

Every feature at bar ``t`` uses bars ``<= t`` only and is a stationary transform (a log return, a
ratio to a trailing average, a bounded oscillator, a normalised volatility or volume measure, or a
calendar phase): no raw price level and no cumulative unbounded level ever appears.
``bounds`` is set for oscillators with a hard range; the EKF denoiser filters those in logit space.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUPS: tuple[str, ...] = ("returns", "trend", "momentum", "volatility", "volume", "calendar")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: unique ``name``, ``group`` (one of :data:`GROUPS`), what it is, hard range if any."""

    name: str
    group: str
    description: str
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"feature {self.name!r}: unknown group {self.group!r}; expected one of {GROUPS}")
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise ValueError(f"feature {self.name!r}: bounds {self.bounds} must satisfy lo < hi")


def _f(name: str, group: str, description: str, bounds: tuple[float, float] | None = None) -> FeatureSpec:
    return FeatureSpec(name, group, description, bounds)


_PCT = (0.0, 100.0)
_UNIT = (-1.0, 1.0)

FEATURES: tuple[FeatureSpec, ...] = (
    # returns (7)
    _f("logret_1", "returns", "log(close_t / close_{t-1})"),
    _f("logret_3", "returns", "log(close_t / close_{t-3})"),
    _f("logret_12", "returns", "log(close_t / close_{t-12})"),
    _f("logret_48", "returns", "log(close_t / close_{t-48})"),
    _f("logret_96", "returns", "log(close_t / close_{t-96})"),
    _f("logret_288", "returns", "log(close_t / close_{t-288})"),
    _f("logret_oc", "returns", "intrabar log(close_t / open_t)"),
    # trend (10)
    _f("close_sma_10", "trend", "close / SMA(close, 10) - 1 (ta SMAIndicator)"),
    _f("close_sma_50", "trend", "close / SMA(close, 50) - 1 (ta SMAIndicator)"),
    _f("close_ema_100", "trend", "close / EMA(close, 100) - 1 (ta EMAIndicator, adjust=False)"),
    _f("macd_norm", "trend", "MACD(12, 26) line / close (ta MACD)"),
    _f("macd_hist_norm", "trend", "MACD(12, 26, 9) histogram / close (ta MACD)"),
    _f("adx_14", "trend", "Average Directional Index, Wilder smoothing over 14 bars", _PCT),
    _f("di_pos_14", "trend", "+DI: Wilder-smoothed +DM / Wilder-smoothed true range x 100, 14 bars", _PCT),
    _f("di_neg_14", "trend", "-DI: Wilder-smoothed -DM / Wilder-smoothed true range x 100, 14 bars", _PCT),
    _f("aroon_up_25", "trend", "Aroon up: 100 x (25 - bars since the 26-bar high) / 25 (ta formula)", _PCT),
    _f(
        "aroon_down_25", "trend", "Aroon down: 100 x (25 - bars since the 26-bar low) / 25 (ta formula)", _PCT
    ),
    # momentum (8)
    _f("rsi_14", "momentum", "Wilder RSI over 14 bars (ta RSIIndicator)", _PCT),
    _f(
        "stoch_rsi_14",
        "momentum",
        "stochastic RSI: RSI's position in its 14-bar range (ta StochRSIIndicator)",
        (0.0, 1.0),
    ),
    _f("stoch_k_14", "momentum", "stochastic %K: close's position in the 14-bar high-low range (ta)", _PCT),
    _f("stoch_d_14", "momentum", "stochastic %D: 3-bar SMA of %K (ta StochasticOscillator)", _PCT),
    _f("williams_r_14", "momentum", "Williams %R over 14 bars (ta WilliamsRIndicator)", (-100.0, 0.0)),
    _f("cci_20", "momentum", "Commodity Channel Index, 20 bars, constant 0.015 (ta formula; |CCI| <= 667)"),
    _f(
        "tsi_25_13", "momentum", "True Strength Index, EMA spans 25 and 13 (ta TSIIndicator)", (-100.0, 100.0)
    ),
    _f("ultimate_osc", "momentum", "Ultimate Oscillator 7/14/28 (ta UltimateOscillator)", _PCT),
    # volatility (9)
    _f("atr_14_ratio", "volatility", "Wilder ATR(14) / close"),
    _f("bb_pctb_20", "volatility", "Bollinger %B, 20 bars, 2 std (ta BollingerBands pband)"),
    _f("bb_width_20", "volatility", "Bollinger band width / middle band, 20 bars, 2 std (ta wband / 100)"),
    _f("rv_12", "volatility", "realized volatility: std of 1-bar log returns over 12 bars"),
    _f("rv_48", "volatility", "realized volatility: std of 1-bar log returns over 48 bars"),
    _f("rv_288", "volatility", "realized volatility: std of 1-bar log returns over 288 bars"),
    _f("parkinson_24", "volatility", "Parkinson volatility sqrt(mean(log(H/L)^2) / (4 ln 2)) over 24 bars"),
    _f(
        "garman_klass_24", "volatility", "Garman-Klass volatility over 24 bars (OHLC estimator, floored at 0)"
    ),
    _f("hl_range", "volatility", "intrabar range log(high / low)"),
    # volume (6)
    _f("volume_z_48", "volume", "(volume - trailing 48-bar mean) / trailing 48-bar std"),
    _f("volume_ratio_288", "volume", "volume / trailing 288-bar mean volume"),
    _f("obv_change_24", "volume", "24-bar change of OBV / 24-bar volume sum (ta OnBalanceVolume)", _UNIT),
    _f("mfi_14", "volume", "Money Flow Index over 14 bars (ta MFIIndicator formula)", _PCT),
    _f("cmf_20", "volume", "Chaikin Money Flow over 20 bars (ta ChaikinMoneyFlowIndicator)", _UNIT),
    _f("volume_ret_corr_48", "volume", "48-bar Pearson correlation of |1-bar log return| with volume", _UNIT),
    # calendar (4)
    _f("hour_sin", "calendar", "sin(2 pi hour/24) of the bar's close time (UTC, fractional hour)", _UNIT),
    _f("hour_cos", "calendar", "cos(2 pi hour/24) of the bar's close time (UTC, fractional hour)", _UNIT),
    _f("dow_sin", "calendar", "sin(2 pi weekday/7) of the bar's close time (UTC, Monday = 0)", _UNIT),
    _f("dow_cos", "calendar", "cos(2 pi weekday/7) of the bar's close time (UTC, Monday = 0)", _UNIT),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}


def features_in_group(group: str) -> tuple[str, ...]:
    """Names of the features in ``group``, in catalog order."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; expected one of {GROUPS}")
    return tuple(f.name for f in FEATURES if f.group == group)
