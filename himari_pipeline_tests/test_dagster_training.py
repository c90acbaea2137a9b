"""policy_checkpoints as a real Dagster materialization (the tiny `smoke` experiment)."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from himari_pipeline.defs.data_assets import DATA_ASSETS, SPLITS
from himari_pipeline.defs.data_checks import DATA_CHECKS
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.defs.training_assets import CHECKPOINTS, TRAINING_ASSETS, TRAINING_CHECKS
from himari_pipeline.rl.checkpoints import META_FILE
from himari_pipeline.rl.experiments import load_experiment
from himari_pipeline.storage.lake import Lake


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    resources = {
        "lake": LakeResource(root=str(tmp / "lake")),
        "settings": PipelineSettings(synthetic_start="2023-01-01", truncation_prefixes=2),
    }
    instance = dg.DagsterInstance.ephemeral()
    dataset = load_experiment("smoke").dataset
    instance.add_dynamic_partitions("datasets", [dataset])
    data = dg.materialize(
        [*DATA_ASSETS, *DATA_CHECKS], partition_key=dataset, instance=instance, resources=resources
    )
    assert data.success
    res = dg.materialize(
        [*DATA_ASSETS, *TRAINING_ASSETS, *TRAINING_CHECKS],
        partition_key="smoke",
        instance=instance,
        resources=resources,
        selection=TRAINING_ASSETS,
    )
    return tmp, res, dataset


def test_checkpoints_are_materialized_with_lineage_to_the_split(trained):
    tmp, res, dataset = trained
    assert res.success
    checks = {e.check_name: e.passed for e in res.get_asset_check_evaluations()}
    assert checks.get("reward_scale") is True
    lake = Lake(tmp / "lake")
    split_v = lake.latest(SPLITS, dataset)
    v = lake.latest(CHECKPOINTS, "smoke")
    assert v.inputs == {SPLITS: split_v.version}
    table = lake.read_table(CHECKPOINTS, "smoke")
    assert len(table) >= 2 and table["is_best"].sum() == 1
    assert (table["split_version"] == split_v.version).all()
    for path in table["checkpoint_path"]:
        meta = json.loads((lake.root / path / META_FILE).read_text())
        assert meta["split_version"] == split_v.version
        assert meta["config_hash"] == load_experiment("smoke").config_hash()
        assert not list((lake.root / path).glob("*.pt")) and list((lake.root / path).glob("*.safetensors"))
    mat = res.get_asset_materialization_events()[0].materialization
    assert {"training_curves", "leaderboard", "best_val_sharpe", "split_version"} <= set(mat.metadata)


def test_collapse_check_reports_on_the_selected_checkpoint(trained):
    _, res, _ = trained
    evals = {e.check_name: e for e in res.get_asset_check_evaluations()}
    assert "no_action_collapse" in evals
    assert "validation decisions" in evals["no_action_collapse"].description
