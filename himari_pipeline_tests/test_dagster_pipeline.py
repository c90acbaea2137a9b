"""Training, validation, the promotion gate and the dbt marts as real Dagster materializations.

One module-scoped run of the whole graph on a short synthetic span with the tiny `smoke` experiment.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from himari_pipeline.defs.data_assets import DATA_ASSETS, SPLITS
from himari_pipeline.defs.data_checks import DATA_CHECKS
from himari_pipeline.defs.dbt_assets import dbt_marts, dbt_resource
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.defs.training_assets import CHECKPOINTS, TRAINING_ASSETS, TRAINING_CHECKS
from himari_pipeline.defs.validation_assets import SUMMARY, VALIDATION_ASSETS, VALIDATION_CHECKS
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
    return tmp, res, dataset, resources, instance


@pytest.fixture(scope="module")
def validated(trained):
    tmp, _, dataset, resources, instance = trained
    everything = [*DATA_ASSETS, *TRAINING_ASSETS, *VALIDATION_ASSETS, *VALIDATION_CHECKS]
    res = dg.materialize(
        everything,
        partition_key="smoke",
        instance=instance,
        resources=resources,
        selection=VALIDATION_ASSETS,
        raise_on_error=False,
    )
    return tmp, res


def test_checkpoints_are_materialized_with_lineage_to_the_split(trained):
    tmp, res, dataset, _, _ = trained
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
    run = lake.root / table["checkpoint_path"].iloc[0].rsplit("/", 1)[0]
    assert list((run / "tensorboard").glob("events.out.tfevents.*")), "no TensorBoard event file"
    mat = res.get_asset_materialization_events()[0].materialization
    assert {"training_curves", "leaderboard", "best_val_sharpe", "split_version"} <= set(mat.metadata)


def test_collapse_check_reports_on_the_selected_checkpoint(trained):
    _, res, _, _, _ = trained
    evals = {e.check_name: e for e in res.get_asset_check_evaluations()}
    assert "no_action_collapse" in evals
    assert "validation decisions" in evals["no_action_collapse"].description


def test_validation_report_is_written_and_the_gate_decides_promotion(validated):
    tmp, res = validated
    lake = Lake(tmp / "lake")
    summary = lake.read_table(SUMMARY, "smoke").iloc[-1]
    assert summary["verdict"] in ("PASS", "FAIL") and summary["n_checkpoints"] >= 2
    html = (lake.root / summary["report_path"]).read_text()
    assert "Verdict" in html and "http://" not in html and "https://" not in html
    for section in ("Leakage", "Live", "Multiple testing", "Shuffle"):
        assert section.lower() in html.lower(), section
    gate = next(e for e in res.get_asset_check_evaluations() if e.check_name == "promotion_gate")
    promoted = {m.asset_key.to_user_string() for m in res.get_asset_materialization_events()}
    assert {"validation_report", "validation_metrics", "validation_summary"} <= promoted
    # the tiny smoke policy cannot be significant: the gate must say FAIL, with reasons, and block promotion
    assert summary["verdict"] == "FAIL" and gate.passed is False and summary["reasons"]
    assert "promoted_policy" not in promoted
    metrics = lake.read_table("validation_metrics", "smoke")
    assert {"validation", "test", "live"} <= set(metrics["section"])
    assert {"policy", "buy_and_hold"} <= set(metrics["subject"])


def test_dbt_marts_build_over_the_lake(validated, monkeypatch):
    tmp, _ = validated
    monkeypatch.setenv("HIMARI_LAKE_ROOT", str(tmp / "lake"))
    res = dg.materialize(
        [dbt_marts],
        resources={"lake": LakeResource(root=str(tmp / "lake")), "dbt": dbt_resource()},
        raise_on_error=False,
    )
    assert res.success
    checks = res.get_asset_check_evaluations()
    assert checks and all(e.passed for e in checks), [e.check_name for e in checks if not e.passed]
    import duckdb

    con = duckdb.connect(str(tmp / "lake" / "marts.duckdb"), read_only=True)
    board = con.execute("SELECT experiment, verdict, dsr FROM mart_checkpoint_leaderboard").fetchall()
    con.close()
    assert [row[0] for row in board] == ["smoke"]
