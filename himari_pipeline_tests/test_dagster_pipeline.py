"""Training, validation, the promotion gate and the dbt marts as real Dagster materializations.

One module-scoped run of the whole graph on a short synthetic span with the tiny `smoke` experiment,
trained on a dataset other than its YAML's default (4-hour bars: 2,190 bars a year, not 8,760), so the
experiment x dataset key and the dataset's annualization are both exercised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from himari_pipeline.defs.data_assets import DATA_ASSETS, SPLITS
from himari_pipeline.defs.dbt_assets import dbt_marts, dbt_resource
from himari_pipeline.defs.partitions import lake_partition, training_key
from himari_pipeline.defs.resources import LakeResource
from himari_pipeline.defs.training_assets import CHECKPOINTS, TRAINING_ASSETS, TRAINING_CHECKS
from himari_pipeline.defs.validation_assets import SUMMARY, VALIDATION_ASSETS, VALIDATION_CHECKS
from himari_pipeline.rl.checkpoints import META_FILE
from himari_pipeline.rl.experiments import load_experiment
from himari_pipeline.sources import dataset_bars_per_year
from himari_pipeline.storage.lake import Lake
from himari_pipeline_tests.builders import data_resources, materialize_data

DATASET = "SYNTH-PLANTED_4h"  # not smoke.yaml's default dataset (SYNTH-PLANTED_1h)
PART = lake_partition("smoke", DATASET)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    resources = data_resources(tmp / "lake", synthetic_start="2023-01-01", truncation_prefixes=2)
    instance = dg.DagsterInstance.ephemeral()
    dataset = DATASET
    assert materialize_data(dataset, resources, instance=instance).success
    res = dg.materialize(
        [*DATA_ASSETS, *TRAINING_ASSETS, *TRAINING_CHECKS],
        partition_key=training_key("smoke", dataset),
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
        partition_key=training_key("smoke", DATASET),
        instance=instance,
        resources=resources,
        selection=VALIDATION_ASSETS,
        raise_on_error=False,
    )
    return tmp, res


@pytest.mark.timeout(300)
def test_checkpoints_are_materialized_with_lineage_to_the_split(trained):
    tmp, res, dataset, _, instance = trained
    assert res.success
    checks = {e.check_name: e.passed for e in res.get_asset_check_evaluations()}
    assert checks.get("reward_scale") is True
    lake = Lake(tmp / "lake")
    split_v = lake.latest(SPLITS, dataset)
    v = lake.latest(CHECKPOINTS, PART)
    assert v.inputs == {SPLITS: split_v.version}
    table = lake.read_table(CHECKPOINTS, PART)
    assert (table["dataset"] == dataset).all() and (table["experiment"] == "smoke").all()
    assert len(table) >= 2 and table["is_best"].sum() == 1
    assert (table["split_version"] == split_v.version).all()
    for path in table["checkpoint_path"]:
        meta = json.loads((lake.root / path / META_FILE).read_text())
        assert meta["split_version"] == split_v.version
        bpy = dataset_bars_per_year(dataset, tmp / "raw")
        assert meta["config_hash"] == load_experiment("smoke").on_dataset(dataset, bpy).config_hash()
        assert meta["env_config"]["bars_per_year"] == bpy
        assert not list((lake.root / path).glob("*.pt")) and list((lake.root / path).glob("*.safetensors"))
    run = lake.root / table["checkpoint_path"].iloc[0].rsplit("/", 1)[0]
    assert list((run / "tensorboard").glob("events.out.tfevents.*")), "no TensorBoard event file"
    mat = res.get_asset_materialization_events()[0].materialization
    assert {"training_curves", "leaderboard", "best_val_sharpe", "split_version"} <= set(mat.metadata)
    assert mat.metadata["dataset"].value == dataset
    assert mat.metadata["split_version"].value == split_v.short
    # the lineage names the dataset's splits partition and the data version the checkpoint was trained on
    record = instance.fetch_materializations(dg.AssetKey(SPLITS), limit=1).records[0]
    assert record.partition_key == dataset
    assert int(mat.tags[f"dagster/input_event_pointer/{SPLITS}"]) == record.storage_id
    assert record.asset_materialization.metadata["lake_version"].value == split_v.short
    assert mat.partition == training_key("smoke", dataset)


def test_collapse_check_reports_on_the_selected_checkpoint(trained):
    _, res, _, _, _ = trained
    evals = {e.check_name: e for e in res.get_asset_check_evaluations()}
    assert "no_action_collapse" in evals
    assert "validation decisions" in evals["no_action_collapse"].description


def test_validation_report_is_written_and_the_gate_decides_promotion(validated):
    tmp, res = validated
    lake = Lake(tmp / "lake")
    summary = lake.read_table(SUMMARY, PART).iloc[-1]
    assert summary["dataset"] == DATASET
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
    # ... and a rejected model is not a broken pipeline: the run is green, the gate a warning, no step
    # failed, and promoted_policy is skipped (its step ends without materializing; it does not fail)
    assert res.success and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.description.startswith("FAIL: ") and summary["reasons"] in gate.description
    assert not [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"]
    promote_events = [e.event_type_value for e in res.all_events if e.step_key == "promoted_policy"]
    assert "STEP_SUCCESS" in promote_events and "ASSET_MATERIALIZATION" not in promote_events
    report_mat = next(
        m.materialization
        for m in res.get_asset_materialization_events()
        if m.asset_key.to_user_string() == "validation_report"
    )
    assert report_mat.metadata["verdict"].value == "FAIL" and report_mat.metadata["dataset"].value == DATASET
    metrics = lake.read_table("validation_metrics", PART)
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
    board = con.execute(
        "SELECT experiment, dataset, verdict, dsr, bars_per_year FROM mart_checkpoint_leaderboard"
    ).fetchall()
    con.close()
    assert [row[:2] for row in board] == [("smoke", DATASET)]
    assert board[0][4] == dataset_bars_per_year(DATASET, tmp / "raw")


def test_training_time_sharpe_is_the_reports_sharpe(trained, validated):
    """Training selects on validation Sharpe annualized with the dataset's bars per year; the report
    scores the selected checkpoint with the same number, so the two Sharpe ratios agree."""
    tmp, _, dataset, _, _ = trained
    lake = Lake(tmp / "lake")
    bpy = dataset_bars_per_year(dataset, tmp / "raw")
    assert 2000 < bpy < 2300  # 4-hour bars, 24/7: about 2,190 a year (not the 1-hour 8,760)
    best = lake.read_table(CHECKPOINTS, PART).query("is_best").iloc[0]
    summary = lake.read_table(SUMMARY, PART).iloc[-1]
    assert summary["checkpoint_step"] == best["step"]
    assert summary["bars_per_year"] == best["bars_per_year"] == bpy
    assert summary["val_sharpe"] == pytest.approx(best["val_greedy_sharpe"], rel=1e-6, abs=1e-9)
    # the same checkpoint annualized as if 1-hour bars would be 2x off: the check is not vacuous
    assert abs(best["val_greedy_sharpe"] * (8760 / bpy) ** 0.5 - summary["val_sharpe"]) > 0.1


def test_test_only_experiments_stay_out_of_the_default_code_location():
    code = (
        "from himari_pipeline.defs.partitions import experiments_partitions as p; "
        "print(p.get_partition_keys())"
    )
    env = {k: v for k, v in os.environ.items() if k != "HIMARI_TEST_EXPERIMENTS"}
    default = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "'default'" in default.stdout and "smoke" not in default.stdout
    env["HIMARI_TEST_EXPERIMENTS"] = "1"
    tests = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "'smoke'" in tests.stdout and "'default'" in tests.stdout
