"""Causal, stationary technical features (44, see :mod:`.catalog`) computed from OHLCV bars."""

from himari_pipeline.features.catalog import FEATURE_NAMES, FEATURES, GROUPS, FeatureSpec, features_in_group
from himari_pipeline.features.compute import WARMUP_BARS, compute_features

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "GROUPS",
    "WARMUP_BARS",
    "FeatureSpec",
    "compute_features",
    "features_in_group",
]
