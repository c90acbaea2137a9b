"""Jobs: the data half for one dataset partition."""

import dagster as dg

from himari_pipeline.defs.partitions import datasets_partitions
from himari_pipeline.defs.training_assets import experiments_partitions

DATA_GROUPS = ("market_data", "features", "regimes", "datasets")

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.groups(*DATA_GROUPS),
    partitions_def=datasets_partitions,
    description="Raw bars -> features -> EKF -> regimes -> splits for one dataset, with every check.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("training"),
    partitions_def=experiments_partitions,
    description="Train one experiment (its dataset's splits must be materialized) and check the run.",
)
