"""Jobs: the data half for one dataset partition."""

import dagster as dg

from himari_pipeline.defs.partitions import datasets_partitions

DATA_GROUPS = ("market_data", "features", "regimes", "datasets")

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.groups(*DATA_GROUPS),
    partitions_def=datasets_partitions,
    description="Raw bars -> features -> EKF -> regimes -> splits for one dataset, with every check.",
)
