"""What the UI shows for training and validation, and checkpoint integrity, as Dagster materializations.

The tiny `smoke` experiment is trained and validated by the real assets (`policy_checkpoints`,
`validate_experiment`) on a small synthetic split written to a temporary lake. The report's asset must
carry every plot under its name, rounded numbers, a link to the HTML report and no fake row count; the
split's file asset its real row count. Then the selected checkpoint's weights are scaled by 1.5 on
disk: validation and a re-run of training both refuse, naming the checkpoint.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from himari_pipeline.datasets.arrays import export_npz
from himari_pipeline.defs.data_assets import DATA_ASSETS, SPLITS
from himari_pipeline.defs.metadata import fmt_number, rounded_metadata
from himari_pipeline.defs.partitions import lake_partition, training_key
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.defs.training_assets import CHECKPOINTS, TRAINING_ASSETS
from himari_pipeline.defs.validation_assets import SUMMARY, VALIDATION_ASSETS, VALIDATION_CHECKS
from himari_pipeline.rl.checkpoints import MODEL_FILE, best_checkpoint
from himari_pipeline.rl.training import build_synthetic_splits
from himari_pipeline.storage.lake import Lake

DATASET = "SYNTH-PLANTED_1h"
NAMED_PLOTS = {
    "plot_validation_test_equity",
    "plot_live_year_equity_vs_buy_and_hold",
    "plot_action_mix",
    "plot_action_mix_per_regime",
}
ALL_ASSETS = [*DATA_ASSETS, *TRAINING_ASSETS, *VALIDATION_ASSETS, *VALIDATION_CHECKS]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    lake = Lake(root)
    splits = build_synthetic_splits("planted", seed=3, start="2024-07-01", end="2025-12-31", context=16)
    npz = export_npz(splits, tmp_path_factory.mktemp("npz") / "splits.npz")
    n_rows = sum(s.n_samples for s in splits.splits.values())
    lake.write_file(SPLITS, DATASET, npz, row_count=n_rows)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("datasets", [DATASET])
    settings = PipelineSettings(raw_dir=str(root / "raw"))
    resources = {"lake": LakeResource(root=str(root)), "settings": settings}

    def materialize(selection):
        return dg.materialize(
            ALL_ASSETS,
            partition_key=training_key("smoke", DATASET),
            instance=instance,
            resources=resources,
            selection=selection,
            raise_on_error=False,
        )

    trained = materialize(TRAINING_ASSETS)
    assert trained.success
    validated = materialize(VALIDATION_ASSETS)
    return lake, n_rows, materialize, trained, validated


def _metadata(result, asset: str) -> dict:
    events = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key.to_user_string() == asset
    ]
    assert events, f"no materialization of {asset}"
    return events[-1].metadata


def _floats(value) -> list[float]:
    if isinstance(value, dg.FloatMetadataValue):
        return [value.value]
    if isinstance(value, dg.JsonMetadataValue):
        value = value.data
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


def _significant_digits(x: float) -> int:
    return len(np.format_float_positional(abs(x), trim="-").replace(".", "").lstrip("0"))


@pytest.mark.timeout(400)  # the module's training and validation run in its setup: 35-100 s here
def test_report_shows_every_plot_by_name_and_links_the_html(pipeline):
    lake, _, _, _, validated = pipeline
    assert validated.success
    meta = _metadata(validated, "validation_report")
    plots = {k for k in meta if k.startswith("plot_")}
    assert NAMED_PLOTS <= plots and not any(re.fullmatch(r"plot_\d+", k) for k in plots)
    html_path = Path(meta["html_report"].value)
    html = html_path.read_text()
    assert len(plots) == html.count("<figure>") >= 5  # all of the report's plots, none cut off
    assert meta["html_report_url"].value == html_path.as_uri()
    assert html_path.is_relative_to(lake.root)
    assert "rows" not in meta and "dagster/row_count" not in meta  # an HTML page has no rows


def test_numbers_are_rounded_and_file_assets_count_real_rows(pipeline):
    lake, n_rows, _, trained, validated = pipeline
    floats = []
    for result, asset in ((trained, "policy_checkpoints"), (validated, "validation_report")):
        floats += [f for v in _metadata(result, asset).values() for f in _floats(v)]
    gate = next(e for e in validated.get_asset_check_evaluations() if e.check_name == "promotion_gate")
    floats += [f for v in gate.metadata.values() for f in _floats(v)]
    finite = [f for f in floats if math.isfinite(f)]
    assert len(finite) >= 5 and max(_significant_digits(f) for f in finite) <= 4, finite
    summary = _metadata(validated, SUMMARY)["summary"].value
    decimals = [float(x) for x in re.findall(r"\d+\.\d+", summary)]  # e.g. not 0.000999000999000999
    assert "| dsr" in summary and decimals and max(map(_significant_digits, decimals)) <= 4, summary
    assert _metadata(validated, SUMMARY)["rows"].value == 1
    assert lake.get_version(SPLITS, DATASET).row_count == n_rows > 1000
    table = lake.read_table(CHECKPOINTS, lake_partition("smoke", DATASET))
    assert _metadata(trained, "policy_checkpoints")["dagster/row_count"].value == len(table) >= 2


def test_changed_weights_are_refused_by_validation_and_by_a_training_rerun(pipeline):
    lake, _, materialize, _, _ = pipeline
    table = lake.read_table(CHECKPOINTS, lake_partition("smoke", DATASET))
    best = best_checkpoint(lake.root / Path(table["checkpoint_path"].iloc[0]).parent)
    tensors = load_file(str(best / MODEL_FILE))
    save_file({k: v * 1.5 for k, v in tensors.items()}, str(best / MODEL_FILE))
    for selection in (VALIDATION_ASSETS, TRAINING_ASSETS):
        res = materialize(selection)
        assert not res.success
        errors = " ".join(
            str(e.event_specific_data.error) for e in res.all_events if e.event_type_value == "STEP_FAILURE"
        )
        assert "CheckpointIntegrityError" in errors and best.name in errors and MODEL_FILE in errors
    # nothing new was recorded from the changed weights
    assert len(lake.versions("validation_report", lake_partition("smoke", DATASET))) == 1
    assert len(lake.versions(CHECKPOINTS, lake_partition("smoke", DATASET))) == 1


def test_rounding_keeps_four_significant_digits_and_leaves_other_values_alone():
    raw = {
        "p": dg.MetadataValue.float(0.000999000999000999),  # the example
        "x": 1234.56789,
        "j": dg.MetadataValue.json({"a": [0.123456789, 2], "ok": True}),
        "n": dg.MetadataValue.int(123456789),
        "nan": dg.MetadataValue.float(float("nan")),
    }
    out = rounded_metadata(raw)
    assert out["p"].value == 0.000999 and out["x"].value == 1235.0
    assert out["j"].data == {"a": [0.1235, 2], "ok": True} and out["n"].value == 123456789
    assert math.isnan(out["nan"].value)
    assert [fmt_number(v) for v in (0.000999000999, 12345.678, 1e-9, "FAIL", 7)] == [
        "0.000999",
        "12350",
        "1e-09",
        "FAIL",
        "7",
    ]
