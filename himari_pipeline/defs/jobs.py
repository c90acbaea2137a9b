"""Jobs: the data half for one dataset, training for one experiment.

Both run in one process by default (spawning a process per step costs more than the steps on small
machines, and lake writers take turns anyway); pass run config
``execution: {config: {multiprocess: {max_concurrent: N}}}`` for the multiprocess executor.
"""

import dagster as dg

from himari_pipeline.defs.partitions import datasets_partitions
from himari_pipeline.defs.training_assets import experiments_partitions

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
DATA_GROUPS = ("market_data", "features", "regimes", "datasets")

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.groups(*DATA_GROUPS),
    partitions_def=datasets_partitions,
    executor_def=dg.multi_or_in_process_executor,
    config=IN_PROCESS,
    description="Raw bars -> features -> EKF -> regimes -> splits for one dataset, with every check.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("training"),
    partitions_def=experiments_partitions,
    executor_def=dg.multi_or_in_process_executor,
    config=IN_PROCESS,
    description="Train one experiment (its dataset's splits must be materialized) and check the run.",
)

validate_job = dg.define_asset_job(
    "validate_job",
    selection=dg.AssetSelection.groups("validation"),
    partitions_def=experiments_partitions,
    executor_def=dg.multi_or_in_process_executor,
    config=IN_PROCESS,
    description="Validation report, promotion gate and (if it passes) the promoted policy of one experiment.",
)

marts_job = dg.define_asset_job(
    "marts_job",
    selection=dg.AssetSelection.groups("marts"),
    executor_def=dg.multi_or_in_process_executor,
    config=IN_PROCESS,
    description="dbt build of the marts over the lake: leaderboard, per-regime performance, datasets.",
)
