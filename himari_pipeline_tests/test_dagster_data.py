"""Real Dagster materializations of the data half into a temporary lake."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from himari_pipeline.datasets import load_npz
from himari_pipeline.defs.data_assets import DATA_ASSETS, DENOISED, FEATURES_T, RAW, REGIMES, SPLITS
from himari_pipeline.defs.data_checks import DATA_CHECKS
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.storage.lake import Lake
from himari_pipeline_tests.test_causality_rows import plant_feature_leak

KEY = "SYNTH-PLANTED_1h"
SPAN = ("2023-01-01", "2025-12-31")


def _resources(tmp_path, **settings) -> dict:
    return {
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "settings": PipelineSettings(
            raw_dir=str(tmp_path / "raw"),
            synthetic_start=SPAN[0],
            synthetic_end=SPAN[1],
            truncation_prefixes=3,
            **settings,
        ),
    }


def _materialize(tmp_path, key: str, instance, selection=None, **settings) -> dg.ExecuteInProcessResult:
    if key not in instance.get_dynamic_partitions("datasets"):
        instance.add_dynamic_partitions("datasets", [key])
    return dg.materialize(
        [*DATA_ASSETS, *DATA_CHECKS],
        partition_key=key,
        instance=instance,
        resources=_resources(tmp_path, **settings),
        selection=selection,
        raise_on_error=False,
    )


def _checks(res: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in res.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("planted")
    instance = dg.DagsterInstance.ephemeral()
    res = _materialize(tmp_path, KEY, instance)
    return tmp_path, instance, res


def test_full_data_half_materializes_with_every_check_passing(planted_run):
    tmp_path, _, res = planted_run
    assert res.success
    checks = _checks(res)
    assert len(checks) == len(DATA_CHECKS) and all(checks.values()), checks
    lake = Lake(tmp_path / "lake")
    for asset in (RAW, FEATURES_T, DENOISED, REGIMES, SPLITS):
        assert lake.latest(asset, KEY) is not None, asset
    mats = {m.asset_key.to_user_string(): m for m in res.get_asset_materialization_events()}
    meta = mats[SPLITS].materialization.metadata
    assert "splits" in meta and "plot" in meta and "input_versions" in meta


def test_lineage_chain_reaches_the_raw_bars(planted_run):
    tmp_path, _, _ = planted_run
    lake = Lake(tmp_path / "lake")
    splits = lake.latest(SPLITS, KEY)
    for up in (RAW, FEATURES_T, DENOISED, REGIMES):
        assert splits.inputs[up] == lake.latest(up, KEY).version
    assert lake.latest(DENOISED, KEY).inputs == {FEATURES_T: lake.latest(FEATURES_T, KEY).version}
    assert lake.latest(FEATURES_T, KEY).inputs == {RAW: lake.latest(RAW, KEY).version}
    assert lake.latest(RAW, KEY).metadata["provenance"]["source"] == "synthetic"
    # the npz names the versions it was built from
    with np.load(lake.root / splits.path, allow_pickle=False) as z:
        meta = json.loads(str(z["metadata_json"]))
    assert json.dumps(meta).count(lake.latest(DENOISED, KEY).version) >= 1
    # gap_before travels from the raw bars into every split, row for row
    raw = lake.read_table(RAW, KEY)
    ds = load_npz(lake.root / splits.path)
    for name, lo_hi in ds.metadata["plan"]["ranges"].items():
        np.testing.assert_array_equal(ds[name].gap_before, raw["gap_before"].to_numpy()[slice(*lo_hi)])


def test_npz_loads_without_this_package(planted_run):
    tmp_path, _, _ = planted_run
    path = Lake(tmp_path / "lake").file_path(SPLITS, KEY)
    code = (
        "import json, sys, numpy as np\n"
        f"z = np.load({str(path)!r}, allow_pickle=False)\n"
        "m = json.loads(str(z['metadata_json']))\n"
        "assert z['train/features_raw'].shape[1] == 44 and len(m['feature_names']) == 44\n"
        "assert not any(k.startswith('himari') for k in sys.modules)\n"
        "print(int(z['train/features_raw'].shape[0]))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 1000


def test_second_materialization_adds_versions_and_keeps_the_old_ones(planted_run):
    tmp_path, instance, _ = planted_run
    lake = Lake(tmp_path / "lake")
    before = {a: lake.latest(a, KEY) for a in (RAW, FEATURES_T, SPLITS)}
    old_features = lake.read_table(FEATURES_T, KEY)
    res = _materialize(tmp_path, KEY, instance, synthetic_seed=8)
    assert res.success
    for asset, v in before.items():
        hist = lake.versions(asset, KEY)
        assert len(hist) == 2 and hist[0].version == v.version and hist[1].version != v.version
    again = lake.read_table(FEATURES_T, KEY, before[FEATURES_T].version)
    pd.testing.assert_frame_equal(again, old_features)
    assert lake.file_path(SPLITS, KEY, before[SPLITS].version).exists()
    # Dagster sees the new data versions too
    record = instance.get_latest_data_version_record(dg.AssetKey(FEATURES_T), partition_key=KEY)
    assert record is not None


def test_planted_leak_is_caught_and_blocks_downstream(tmp_path, monkeypatch):
    from himari_pipeline.features import compute as features_compute
    from himari_pipeline.features.catalog import FEATURE_NAMES

    real = features_compute.feature_arrays

    def leaky(cols, ewm, first=0):  # a centred window: every row averages in the next bar's value
        f = real(cols, ewm, first)
        x = np.asarray(f[FEATURE_NAMES[0]], dtype=float)
        ahead = np.concatenate([x[..., 1:], x[..., -1:]], axis=-1)
        f[FEATURE_NAMES[0]] = 0.5 * (x + ahead)
        return f

    monkeypatch.setattr(features_compute, "feature_arrays", leaky)
    res = _materialize(tmp_path, KEY, dg.DagsterInstance.ephemeral())
    checks = _checks(res)
    assert checks["features_truncation_invariance"] is False
    evals = [e for e in res.get_asset_check_evaluations() if e.check_name == "features_truncation_invariance"]

    assert "differ" in evals[0].description and FEATURE_NAMES[0] in evals[0].description
    done = {m.asset_key.to_user_string() for m in res.get_asset_materialization_events()}
    assert FEATURES_T in done and DENOISED not in done and SPLITS not in done


@pytest.mark.timeout(300)
def test_one_row_leak_is_caught_by_the_every_row_check_and_named(tmp_path, monkeypatch):
    """A look-ahead on ONE row of the shared feature code fails the check, which names column and row."""

    monkeypatch.setenv("HIMARI_TRUNCATION_ROWS", "all")
    key, leak_row = "SYNTH-NULL_1h", 700

    def run(lake: str):
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("datasets", [key])
        settings = PipelineSettings(
            raw_dir=str(tmp_path / "raw"), synthetic_start="2024-01-01", synthetic_end="2024-02-10"
        )
        return dg.materialize(
            [*DATA_ASSETS, *DATA_CHECKS],
            partition_key=key,
            instance=instance,
            resources={"lake": LakeResource(root=str(tmp_path / lake)), "settings": settings},
            selection=[RAW, FEATURES_T, DENOISED],
            raise_on_error=False,
        )

    def evaluation(res, name):
        return next(e for e in res.get_asset_check_evaluations() if e.check_name == name)

    clean = run("clean")  # the clean code passes, every row compared
    bars = Lake(tmp_path / "clean").read_table(RAW, key)
    for name in ("features_truncation_invariance", "denoised_truncation_invariance"):
        e = evaluation(clean, name)
        assert e.passed and e.metadata["every_row_from"].value == 0, (name, e.description)
        assert e.metadata["rows_checked"].value == len(bars)

    leak_ts = bars["timestamp"].iloc[leak_row]
    plant_feature_leak(monkeypatch, leak_ts, "logret_1")  # row `leak_row` reads the next bar's close
    res = run("leaky")
    e = evaluation(res, "features_truncation_invariance")
    assert not e.passed
    rows_part, prefix_part = e.description.split(". Prefixes: ")
    assert f"column 'logret_1' at row {leak_row} ({leak_ts})" in rows_part, e.description
    assert prefix_part.startswith("identical rows on")  # the whole-prefix check alone misses it
    assert e.metadata["mismatches"].value[0]["row"] == leak_row
    done = {m.asset_key.to_user_string() for m in res.get_asset_materialization_events()}
    assert FEATURES_T in done and DENOISED not in done  # blocking: nothing downstream of the leak
