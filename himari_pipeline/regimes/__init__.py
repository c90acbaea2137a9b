"""Causal market-regime labels with confidences (LOW_VOL, TRENDING, HIGH_VOL, CRISIS)."""

from himari_pipeline.regimes.detect import (
    REGIME_COLUMNS,
    REGIME_IDS,
    REGIMES,
    WARMUP_ID,
    RegimeParams,
    compute_indicators,
    detect_regimes,
    regime_distribution,
    regime_warmup,
    switches_per_1000,
)

__all__ = [
    "REGIMES",
    "REGIME_COLUMNS",
    "REGIME_IDS",
    "WARMUP_ID",
    "RegimeParams",
    "compute_indicators",
    "detect_regimes",
    "regime_distribution",
    "regime_warmup",
    "switches_per_1000",
]
