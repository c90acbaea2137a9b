"""Leak-proof train/val/test/live-year splits: their layout, their arrays and their storage."""

from himari_pipeline.datasets.arrays import export_npz, load_npz, splits_from_frame, splits_to_frame
from himari_pipeline.datasets.splits import (
    ARRAY_FIELDS,
    FRACTION_PRESETS,
    SPLIT_NAMES,
    DatasetSplits,
    SplitArrays,
    SplitConfig,
    SplitPlan,
    apply_scaler,
    bar_years,
    build_splits,
    check_splits,
    fit_scaler,
    plan_splits,
    required_warmup,
)

__all__ = [
    "ARRAY_FIELDS",
    "FRACTION_PRESETS",
    "SPLIT_NAMES",
    "DatasetSplits",
    "SplitArrays",
    "SplitConfig",
    "SplitPlan",
    "apply_scaler",
    "bar_years",
    "build_splits",
    "check_splits",
    "export_npz",
    "fit_scaler",
    "load_npz",
    "plan_splits",
    "required_warmup",
    "splits_from_frame",
    "splits_to_frame",
]
