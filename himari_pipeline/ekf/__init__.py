"""Causal EKF denoising of feature tables (model in :mod:`.model`, fast path in :mod:`.vectorized`)."""

from himari_pipeline.ekf.model import EKFParams, FeatureMatrices
from himari_pipeline.ekf.vectorized import EKFState, denoise_features, denoise_features_with_state, ekf_filter

__all__ = [
    "EKFParams",
    "EKFState",
    "FeatureMatrices",
    "denoise_features",
    "denoise_features_with_state",
    "ekf_filter",
]
