"""File sources end to end: Binance klines and Parquet through Dagster and `himari ingest`; bad input."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from himari_pipeline.cli import app
from himari_pipeline.defs.data_assets import FEATURES_T, RAW, SPLITS
from himari_pipeline.storage.lake import Lake
from himari_pipeline_tests.builders import data_resources, materialize_data, synthetic_bars, write_binance_csv


def _run(tmp_path: Path, key: str, selection=None) -> dg.ExecuteInProcessResult:
    resources = data_resources(tmp_path / "lake", raw_dir=str(tmp_path / "raw"), truncation_prefixes=2)
    return materialize_data(key, resources, selection=selection)


def test_binance_files_ms_and_us_dropped_in_raw_become_a_dataset(tmp_path):
    bars = synthetic_bars("2024-11-01", "2025-01-31")
    folder = tmp_path / "raw" / "BTCUSDT" / "1h"
    folder.mkdir(parents=True)
    cut = int(np.searchsorted(bars["timestamp"], pd.Timestamp("2025-01-01 01:00", tz="UTC")))
    write_binance_csv(bars.iloc[:cut], folder / "BTCUSDT-1h-2024.csv")
    write_binance_csv(bars.iloc[cut:], folder / "BTCUSDT-1h-2025-01.csv", micros=True)
    res = _run(tmp_path, "BTCUSDT_1h", selection=[RAW, FEATURES_T])
    assert res.success
    lake = Lake(tmp_path / "lake")
    stored = lake.read_table(RAW, "BTCUSDT_1h")
    assert (stored.pop("gap_before") == 0).all()
    pd.testing.assert_frame_equal(stored, bars, check_exact=False, rtol=1e-12)
    v = lake.latest(RAW, "BTCUSDT_1h")
    assert set(v.metadata["provenance"]["files"]) == {"BTCUSDT-1h-2024.csv", "BTCUSDT-1h-2025-01.csv"}
    assert all(h.startswith("sha256:") for h in v.inputs.values())
    assert lake.latest(FEATURES_T, "BTCUSDT_1h").inputs == {RAW: v.version}


def test_parquet_file_source(tmp_path):
    bars = synthetic_bars("2024-12-01", "2024-12-31")
    folder = tmp_path / "raw" / "ETHUSDT" / "1h"
    folder.mkdir(parents=True)
    generic = bars.assign(timestamp=bars["timestamp"] - pd.Timedelta(hours=1))  # generic files: open time
    generic.to_parquet(folder / "eth.parquet")
    res = _run(tmp_path, "ETHUSDT_1h", selection=[RAW])
    assert res.success
    stored = Lake(tmp_path / "lake").read_table(RAW, "ETHUSDT_1h")
    pd.testing.assert_frame_equal(stored.drop(columns="gap_before"), bars)


def test_bad_file_fails_with_file_row_rule_and_keeps_the_stored_version(tmp_path):
    bars = synthetic_bars("2024-12-01", "2024-12-31")
    folder = tmp_path / "raw" / "BTCUSDT" / "1h"
    folder.mkdir(parents=True)
    write_binance_csv(bars, folder / "good.csv")
    assert _run(tmp_path, "BTCUSDT_1h", selection=[RAW]).success
    lake = Lake(tmp_path / "lake")
    before = lake.versions(RAW, "BTCUSDT_1h")
    bad = bars.iloc[:50].copy()
    bad["timestamp"] += pd.Timedelta(hours=len(bars))  # continues right after the good file
    bad.loc[bad.index[6], "high"] = bad["low"].iloc[6] * 0.5
    write_binance_csv(bad, folder / "bad.csv")
    res = _run(tmp_path, "BTCUSDT_1h", selection=[RAW])
    assert not res.success
    failure = next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.step_failure_data.error.to_string())
    assert "bad.csv" in message and "row 7" in message and "high_below_low" in message
    assert lake.versions(RAW, "BTCUSDT_1h") == before


@pytest.fixture
def cli_env(lake_env, monkeypatch):
    monkeypatch.setenv("HIMARI_TRUNCATION_PREFIXES", "2")
    return lake_env


def test_cli_ingest_validates_then_materializes_and_lists_versions(cli_env):
    tmp_path = cli_env
    bars = synthetic_bars("2023-01-01", "2024-12-31")
    good = write_binance_csv(bars, tmp_path / "BTCUSDT-1h.csv")
    runner = CliRunner()
    out = runner.invoke(app, ["ingest", str(good), "--symbol", "BTCUSDT", "--timeframe", "1h"])
    assert out.exit_code == 0, out.output
    assert "BTCUSDT_1h] data_job ok" in out.output
    assert (tmp_path / "lake" / "raw" / "BTCUSDT" / "1h" / "BTCUSDT-1h.csv").exists()
    listing = runner.invoke(app, ["versions", "--dataset", "BTCUSDT_1h"])
    assert listing.exit_code == 0
    for asset in (RAW, FEATURES_T, SPLITS):
        assert asset in listing.output


def test_cli_ingest_rejects_bad_file_and_changes_nothing(cli_env):
    tmp_path = cli_env
    bars = synthetic_bars("2024-12-01", "2024-12-31")
    good = write_binance_csv(bars, tmp_path / "good.csv")
    runner = CliRunner()
    args = ["--symbol", "BTCUSDT", "--timeframe", "1h", "--no-materialize"]
    assert runner.invoke(app, ["ingest", str(good), *args]).exit_code == 0
    folder = tmp_path / "lake" / "raw" / "BTCUSDT" / "1h"
    before = sorted(p.name for p in folder.iterdir())
    overlap = bars.iloc[100:110].copy()  # duplicates bars already in good.csv
    bad = write_binance_csv(overlap, tmp_path / "overlap.csv")
    out = runner.invoke(app, ["ingest", str(bad), *args])
    assert out.exit_code == 1
    assert (
        "nothing changed" in out.output
        and "overlap.csv" in out.output
        and "duplicate_timestamp" in out.output
    )
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("symbol", ["../etc", "a'b", "SYNTH-NULL"])
def test_cli_ingest_rejects_unsafe_or_reserved_names(cli_env, symbol):
    good = write_binance_csv(synthetic_bars("2024-12-01", "2024-12-02"), cli_env / "g.csv")
    out = CliRunner().invoke(app, ["ingest", str(good), "--symbol", symbol, "--timeframe", "1h"])
    assert out.exit_code == 1
    assert not (cli_env / "lake" / "raw").exists() or not any((cli_env / "lake" / "raw").iterdir())
