"""Jobs: data for one dataset, training / validation for one experiment x dataset, the dbt marts.

The executor is configuration (``HIMARI_EXECUTOR``, see :mod:`himari_pipeline.defs.executors`): by
default steps run in one process (spawning a process per step costs more than the steps on small
machines, and lake writers take turns anyway), and run config
``execution: {config: {multiprocess: {max_concurrent: N}}}`` switches a run to the multiprocess
executor; ``HIMARI_EXECUTOR=k8s`` (or ``celery``) runs the same definitions on a cluster.
"""

import dagster as dg

from himari_pipeline.defs.executors import executor_from_env
from himari_pipeline.defs.partitions import datasets_partitions, training_partitions

EXECUTOR = executor_from_env()
RUN = {"executor_def": EXECUTOR.executor_def, "config": EXECUTOR.run_config or None}
DATA_GROUPS = ("market_data", "features", "regimes", "datasets")

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.groups(*DATA_GROUPS),
    partitions_def=datasets_partitions,
    **RUN,
    description="Raw bars -> features -> EKF -> regimes -> splits for one dataset, with every check.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("training"),
    partitions_def=training_partitions,
    **RUN,
    description="Train one experiment on one dataset (its splits must be materialized) and check the run.",
)

validate_job = dg.define_asset_job(
    "validate_job",
    selection=dg.AssetSelection.groups("validation"),
    partitions_def=training_partitions,
    **RUN,
    description="Validation report, promotion gate and (on PASS) the promoted policy of one experiment "
    "trained on one dataset; a FAIL verdict is a green run that skips the promotion.",
)

marts_job = dg.define_asset_job(
    "marts_job",
    selection=dg.AssetSelection.groups("marts"),
    **RUN,
    description="dbt build of the marts over the lake: leaderboard, per-regime performance, datasets.",
)
