"""Thin Dagster layer: assets, checks, resources, jobs, schedules and sensors."""

import warnings

# Partitioned asset checks are a Dagster preview feature; we rely on them deliberately.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")
