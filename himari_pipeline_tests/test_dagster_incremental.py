"""New bars in the files extend the data tables without recomputing history, bit-identically."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from himari_pipeline import incremental
from himari_pipeline.defs import data_assets
from himari_pipeline.defs.data_assets import DATA_ASSETS, DENOISED, FEATURES_T, RAW, REGIMES, STATE_KEY
from himari_pipeline.defs.data_checks import DATA_CHECKS
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.ekf import EKFParams, denoise_features
from himari_pipeline.features import compute_features
from himari_pipeline.features.append import FeatureState
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars
from himari_pipeline.regimes import RegimeParams, detect_regimes
from himari_pipeline.regimes.append import RegimeState
from himari_pipeline.storage.hashing import frame_hash, normalize_frame
from himari_pipeline.storage.lake import Lake
from himari_pipeline_tests.test_dagster_files import write_binance_csv

KEY = "BTCUSDT_1h"
TABLES = (FEATURES_T, DENOISED, REGIMES)
SELECTION = [RAW, *TABLES]


def _bars() -> pd.DataFrame:
    return generate_synthetic_bars(
        SyntheticConfig(seed=5, start="2024-08-01", end="2024-12-03", timeframe="1h")
    )


def _materialize(root: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    if KEY not in instance.get_dynamic_partitions("datasets"):
        instance.add_dynamic_partitions("datasets", [KEY])
    return dg.materialize(
        [*DATA_ASSETS, *DATA_CHECKS],
        partition_key=KEY,
        instance=instance,
        resources={
            "lake": LakeResource(root=str(root / "lake")),
            "settings": PipelineSettings(raw_dir=str(root / "raw"), truncation_prefixes=2),
        },
        selection=SELECTION,
        raise_on_error=False,
    )


def _meta(res: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.materialization.metadata.items()}
        for m in res.get_asset_materialization_events()
    }


def _cuts(bars: pd.DataFrame) -> list[int]:
    """File boundaries: everything up to 1 Dec, then 1 Dec (24 bars), then 2-3 Dec (48 bars)."""
    ts = bars["timestamp"]
    return [
        int(np.searchsorted(ts, pd.Timestamp(d, tz="UTC"), side="right"))
        for d in ("2024-12-01", "2024-12-02")
    ]


def _versions(lake: Lake) -> dict[str, list]:
    return {t: lake.versions(t, KEY) for t in (RAW, *TABLES)}


@pytest.fixture(scope="module")
def appended(tmp_path_factory):
    """One lake fed file by file (full, then two appends), run again unchanged, then history edited."""
    bars = _bars()
    c1, c2 = _cuts(bars)
    root = tmp_path_factory.mktemp("incremental")
    folder = root / "raw" / "BTCUSDT" / "1h"
    folder.mkdir(parents=True)
    lake, instance, out = (
        Lake(root / "lake"),
        dg.DagsterInstance.ephemeral(),
        {"bars": bars, "cuts": (c1, c2)},
    )
    out["runs"] = []
    for name, part in (("a.csv", bars.iloc[:c1]), ("b.csv", bars.iloc[c1:c2]), ("c.csv", bars.iloc[c2:])):
        write_binance_csv(part, folder / name)
        out["runs"].append(_materialize(root, instance))
    out["tables"] = {t: lake.read_table(t, KEY) for t in (RAW, *TABLES)}
    out["versions"] = _versions(lake)
    out["states"] = {t: lake.latest(t, KEY).metadata[STATE_KEY] for t in TABLES}
    out["unchanged"] = _materialize(root, instance)
    out["versions_unchanged"] = _versions(lake)
    edited = bars.iloc[:c1].copy()  # a correction in the middle of the stored history
    edited.loc[800, "close"] = (edited.loc[800, "high"] + edited.loc[800, "low"]) / 2
    write_binance_csv(edited, folder / "a.csv")
    out["edited"] = _materialize(root, instance)
    out["lake"] = lake
    return out


def test_all_runs_succeed_with_every_check_passing(appended):
    for res in (*appended["runs"], appended["unchanged"], appended["edited"]):
        assert res.success
        checks = {e.check_name: e.passed for e in res.get_asset_check_evaluations()}
        assert "features_truncation_invariance" in checks and all(checks.values()), checks


def test_first_run_is_full_and_later_runs_append_only_the_new_bars(appended):
    bars, (c1, c2) = appended["bars"], appended["cuts"]
    first, second, third = (_meta(r) for r in appended["runs"])
    for t in TABLES:
        assert first[t]["mode"] == "full" and first[t]["full_reason"] == "no stored version"
        assert second[t]["mode"] == "incremental" and second[t]["appended_rows"] == c2 - c1 == 24
        assert third[t]["mode"] == "incremental" and third[t]["appended_rows"] == len(bars) - c2 == 48
        assert third[t]["rows"] == len(bars) and "full_reason" not in third[t]
        assert third[t]["compute_seconds"] >= 0.0
    versions = appended["versions"]
    for t in TABLES:  # the lake records it too, and the old versions stay
        assert [v.metadata["mode"] for v in versions[t]] == ["full", "incremental", "incremental"]
        assert [v.row_count for v in versions[t]] == [c1, c2, len(bars)]
    states = appended["states"]  # each table keeps its own state, in its own version
    raw = appended["tables"][RAW]
    for t in (FEATURES_T, REGIMES):  # small: the bars' tail is taken from the stored raw bars
        assert "tail" not in states[t] and len(json.dumps(states[t])) < 4000, t
    for state in (
        FeatureState.from_dict(states[FEATURES_T], raw),
        RegimeState.from_dict(states[REGIMES], raw),
    ):
        assert state.n_bars == len(bars) and state.last_timestamp == bars["timestamp"].iloc[-1]
        assert len(state.tail) < c1  # the stored tail, not the history
    assert states[DENOISED]["n_rows"] == len(bars) and set(states[DENOISED]) == {
        "ekf_params",
        "n_rows",
        "ekf",
    }
    assert all("ekf" not in str(list(states[t])) for t in (FEATURES_T, REGIMES))  # the EKF state once


def test_incremental_tables_are_identical_to_a_full_recompute(appended):
    tables, versions = appended["tables"], appended["versions"]
    raw = tables[RAW]
    assert (raw["gap_before"] == 0).all()
    pd.testing.assert_frame_equal(
        raw.drop(columns="gap_before"), appended["bars"], check_exact=False, rtol=1e-12
    )
    feats = compute_features(raw)
    full = {
        FEATURES_T: feats,
        DENOISED: denoise_features(feats, EKFParams.for_features()),
        REGIMES: detect_regimes(raw, "1h"),
    }
    for t, ref in full.items():
        assert versions[t][-1].version == frame_hash(ref), t  # a version is the frame_hash of its rows
        pd.testing.assert_frame_equal(tables[t], normalize_frame(ref), check_exact=True)


def test_unchanged_files_give_the_same_versions(appended):
    assert appended["versions_unchanged"] == appended["versions"]
    assert all(_meta(appended["unchanged"])[t]["appended_rows"] == 0 for t in TABLES)


def test_changed_history_falls_back_to_a_full_recompute(appended):
    meta, lake = _meta(appended["edited"]), appended["lake"]
    for t in TABLES:
        assert meta[t]["mode"] == "full" and "do not extend" in meta[t]["full_reason"], meta[t]
    raw = lake.read_table(RAW, KEY)
    assert raw["close"].iloc[800] != appended["bars"]["close"].iloc[800]
    feats = compute_features(raw)
    assert lake.latest(FEATURES_T, KEY).version == frame_hash(feats)
    assert lake.latest(DENOISED, KEY).version == frame_hash(denoise_features(feats, EKFParams.for_features()))
    assert lake.latest(REGIMES, KEY).version == frame_hash(detect_regimes(raw, "1h"))


def test_other_code_or_no_state_plans_a_full_recompute(appended):
    lake = appended["lake"]
    raw = lake.read_table(RAW, KEY)
    new = raw.iloc[-5:].assign(timestamp=raw["timestamp"].iloc[-5:] + pd.Timedelta(hours=5))
    more = pd.concat([raw, new], ignore_index=True)  # five more hourly bars
    stored = data_assets._stored(lake, KEY, REGIMES, RAW)
    params = RegimeParams()
    up = incremental.update_regimes(more, stored, data_assets.REGIMES_CODE, "1h", params)
    assert up.mode == "incremental" and up.appended == 5
    assert RegimeState.from_dict(up.state, more).n_bars == len(more)
    pd.testing.assert_frame_equal(up.table, normalize_frame(detect_regimes(more, "1h")), check_exact=True)
    up = incremental.update_regimes(more, stored, "other-code", "1h", params)
    assert up.mode == "full" and "code version changed" in up.reason
    other = RegimeParams(min_dwell=3)
    up = incremental.update_regimes(more, stored, data_assets.REGIMES_CODE, "1h", other)
    assert up.mode == "full" and "does not match" in up.reason
    feats = lake.read_table(FEATURES_T, KEY)
    den_stored = data_assets._stored(lake, KEY, DENOISED, FEATURES_T)
    code = data_assets.DENOISED_CODE
    assert (
        incremental.update_denoised(feats, den_stored, code, EKFParams.for_features()).mode == "incremental"
    )
    up = incremental.update_denoised(feats, den_stored, code, EKFParams.for_features(q_level=0.1))
    assert up.mode == "full" and "EKF state" in up.reason
    no_state = dataclasses.replace(stored, state=None)
    up = incremental.update_regimes(more, no_state, data_assets.REGIMES_CODE, "1h", params)
    assert up.mode == "full" and "no append state" in up.reason
    bad = dataclasses.replace(stored, state={**stored.state, "n_bars": 7})
    up = incremental.update_regimes(more, bad, data_assets.REGIMES_CODE, "1h", params)
    assert up.mode == "full" and "does not match" in up.reason
