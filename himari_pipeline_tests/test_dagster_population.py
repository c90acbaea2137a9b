"""A seed population through the real assets: one checkpoint row per seed, the population in the report."""

from __future__ import annotations

import re

import dagster as dg
import pytest
import torch

from himari_pipeline.datasets.arrays import export_npz
from himari_pipeline.defs.data_assets import DATA_ASSETS, SPLITS
from himari_pipeline.defs.partitions import lake_partition, training_key
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.defs.training_assets import CHECKPOINTS, TRAINING_ASSETS, TRAINING_CHECKS
from himari_pipeline.defs.validation_assets import REPORT_HTML, SUMMARY, VALIDATION_ASSETS, VALIDATION_CHECKS
from himari_pipeline.rl.training import build_synthetic_splits
from himari_pipeline.storage.lake import Lake

DATASET, EXPERIMENT = "SYNTH-PLANTED_1h", "smoke_population"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    lake = Lake(root)
    splits = build_synthetic_splits("planted", seed=3, start="2024-07-01", end="2025-12-31", context=16)
    npz = export_npz(splits, tmp_path_factory.mktemp("npz") / "splits.npz")
    lake.write_file(SPLITS, DATASET, npz, row_count=sum(s.n_samples for s in splits.splits.values()))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("datasets", [DATASET])
    resources = {
        "lake": LakeResource(root=str(root)),
        "settings": PipelineSettings(raw_dir=str(root / "raw")),
    }
    assets = [*DATA_ASSETS, *TRAINING_ASSETS, *TRAINING_CHECKS, *VALIDATION_ASSETS, *VALIDATION_CHECKS]

    def materialize(selection):
        return dg.materialize(
            assets,
            partition_key=training_key(EXPERIMENT, DATASET),
            instance=instance,
            resources=resources,
            selection=selection,
            raise_on_error=False,
        )

    trained = materialize([*TRAINING_ASSETS, *TRAINING_CHECKS])
    validated = materialize(VALIDATION_ASSETS)
    return lake, trained, validated


def test_population_trains_one_row_per_checkpoint_of_each_seed(pipeline) -> None:
    lake, trained, _ = pipeline
    assert trained.success
    table = lake.read_table(CHECKPOINTS, lake_partition(EXPERIMENT, DATASET))
    assert sorted(table["seed"].unique()) == [3, 4]
    assert table.groupby("seed")["is_best"].sum().tolist() == [1, 1]  # each seed selects its own
    assert all(p.split("/")[-2] in ("seed_3", "seed_4") for p in table["checkpoint_path"])
    meta = [e.materialization.metadata for e in trained.get_asset_materialization_events()][-1]
    assert meta["drift_neutral"].value == {"mirror": False, "demeaned_reward": False, "drift_per_bar": None}
    assert meta["runtime"].value["torch"] == torch.__version__  # where the selected checkpoints were drawn
    checks = {e.check_name: e.passed for e in trained.get_asset_check_evaluations()}
    assert "no_action_collapse" in checks and "reward_scale" in checks


def test_population_report_carries_the_seed_rows_and_the_population_verdict(pipeline) -> None:
    lake, _, validated = pipeline
    assert validated.success
    events = [
        e.materialization
        for e in validated.get_asset_materialization_events()
        if e.materialization.asset_key.to_user_string() == REPORT_HTML
    ]
    meta = events[-1].metadata
    seeds = meta["population_seeds"].value
    assert re.search(r"\|\s+3\s+\|", seeds) and re.search(r"\|\s+4\s+\|", seeds)
    assert "Seed population" in meta["report"].value and "plot_population_equity" in meta
    summary = lake.read_table(SUMMARY, lake_partition(EXPERIMENT, DATASET)).iloc[-1]
    assert summary["verdict"] in ("PASS", "FAIL")
    assert summary["n_checkpoints"] == 4  # the DSR counts both validations of both seeds


def test_summary_names_the_reported_seeds_checkpoint(pipeline) -> None:
    """Every seed has a checkpoint at each step: the summary names the reported one by its path, and it
    is that seed's own selection (what promotion archives and the leaderboard joins on)."""
    lake, _, _ = pipeline
    part = lake_partition(EXPERIMENT, DATASET)
    summary = lake.read_table(SUMMARY, part).iloc[-1]
    table = lake.read_table(CHECKPOINTS, part)
    same_step = table.loc[table["step"] == int(summary["checkpoint_step"])]
    assert len(same_step) == 2  # a step alone cannot tell the seeds apart
    row = table.loc[table["checkpoint_path"] == summary["checkpoint_path"]]
    assert len(row) == 1 and bool(row["is_best"].iloc[0])
