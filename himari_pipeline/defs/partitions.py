"""Partitions: datasets (dynamic, ``SYMBOL_TIMEFRAME``) and experiment x dataset for training/validation.

Data assets are partitioned by dataset. Checkpoints, reports and the promoted policy are partitioned
by ``experiment`` x ``dataset`` (a multi-partition, key ``DATASET|EXPERIMENT`` in the UI), so one
experiment can be trained on any dataset and the lineage shows which dataset's splits it used. In
the lake those assets are stored under :func:`lake_partition` (``EXPERIMENT.DATASET``).

Test-only experiments (``smoke*``) are partitions only when ``HIMARI_TEST_EXPERIMENTS=1`` (the test
suite sets it; the CLI sets it when one is named), so they stay out of the default code location.
"""

from __future__ import annotations

import warnings

import dagster as dg

from himari_pipeline.market.bars import validate_name
from himari_pipeline.rl.experiments import list_experiments

EXPERIMENT_DIM, DATASET_DIM = "experiment", "dataset"

datasets_partitions = dg.DynamicPartitionsDefinition(name="datasets")
experiments_partitions = dg.StaticPartitionsDefinition(list_experiments())
training_partitions = dg.MultiPartitionsDefinition(
    {EXPERIMENT_DIM: experiments_partitions, DATASET_DIM: datasets_partitions}
)
with warnings.catch_warnings():  # a beta class in dagster 1.13; its behaviour is what we need
    warnings.simplefilter("ignore", dg.BetaWarning)
    #: checkpoints (experiment x dataset) read the splits of their dataset
    SPLITS_OF_DATASET = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DATASET_DIM)


def training_key(experiment: str, dataset: str) -> dg.MultiPartitionKey:
    """The Dagster partition key of ``experiment`` trained on ``dataset``."""
    return dg.MultiPartitionKey({EXPERIMENT_DIM: experiment, DATASET_DIM: dataset})


def split_training_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """``(experiment, dataset)`` of a training partition key (a MultiPartitionKey or its string)."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        dims = training_partitions.get_partition_key_from_str(str(key)).keys_by_dimension
    return dims[EXPERIMENT_DIM], dims[DATASET_DIM]


def lake_partition(experiment: str, dataset: str) -> str:
    """The lake partition holding ``experiment`` trained on ``dataset`` (``EXPERIMENT.DATASET``)."""
    return validate_name("partition", f"{validate_name('experiment', experiment)}.{dataset}")


def retrain_keys(instance: dg.DagsterInstance, trained_only: bool = False) -> list[str]:
    """Training partitions worth refreshing on a schedule (not the whole experiment x dataset product):
    every pair that already has checkpoints, plus (unless ``trained_only``) every experiment on its
    YAML's default dataset when that dataset is registered."""
    from himari_pipeline.rl.experiments import load_experiment

    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    names = set(experiments_partitions.get_partition_keys())
    keys = (
        set()
        if trained_only
        else {
            str(training_key(n, load_experiment(n).dataset))
            for n in names
            if load_experiment(n).dataset in known
        }
    )
    for key in instance.get_materialized_partitions(dg.AssetKey("policy_checkpoints")):
        try:
            name, dataset = split_training_key(key)
        except Exception:  # a key from an older partitioning: not a current partition
            continue
        if name in names and dataset in known:
            keys.add(str(training_key(name, dataset)))
    return sorted(keys)
