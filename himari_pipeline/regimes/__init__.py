"""Causal market-regime labels with confidences (LOW_VOL, TRENDING, HIGH_VOL, CRISIS)."""

from himari_pipeline.regimes.detect import (
    REGIME_COLUMNS,
    RegimeParams,
    compute_indicators,
    detect_regimes,
    regime_distribution,
    regime_warmup,
    switches_per_1000,
)

__all__ = [
    "REGIME_COLUMNS",
    "RegimeParams",
    "compute_indicators",
    "detect_regimes",
    "regime_distribution",
    "regime_warmup",
    "switches_per_1000",
]
