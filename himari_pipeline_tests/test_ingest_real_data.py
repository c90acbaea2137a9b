"""`himari ingest` as a user runs it (a subprocess) on real market data, gaps, bad input and races.

Real data: the hourly EURUSD and daily GOOG bars shipped with the `backtesting` package, converted here
to the generic CSV layout (timestamp = bar open time, UTC).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

from himari_pipeline import sources
from himari_pipeline.defs.data_assets import RAW, SPLITS
from himari_pipeline.defs.partitions import lake_partition
from himari_pipeline.storage.lake import Lake
from himari_pipeline_tests.builders import data_resources, materialize_data, synthetic_bars, write_binance_csv

HIMARI = str(Path(sys.executable).with_name("himari"))


@pytest.fixture
def env(tmp_path) -> dict:
    return {
        **os.environ,
        "HIMARI_LAKE_ROOT": str(tmp_path / "lake"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "HIMARI_TRUNCATION_PREFIXES": "2",
    }


def himari(env: dict, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    out = subprocess.run([HIMARI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    return out


def generic_csv(df: pd.DataFrame, path: Path) -> Path:
    """backtesting.py's frame (Open..Volume, naive UTC index of bar open times) as a generic CSV."""
    out = df.rename(columns=str.lower).rename_axis("timestamp").reset_index()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out[["timestamp", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    return path


def raw_folder(env: dict, symbol: str, timeframe: str) -> Path:
    return Path(env["HIMARI_LAKE_ROOT"]) / "raw" / symbol / timeframe


def train_and_report(env: dict, key: str, bars_per_year: float) -> None:
    """`himari run -e smoke -d KEY` as a user runs it: the report is written, annualized with the
    dataset's own bars per year (not the 24/7 number of its timeframe)."""
    out = himari(env, "run", "-e", "smoke", "-d", key, timeout=800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lake = Lake(env["HIMARI_LAKE_ROOT"])
    summary = lake.read_table("validation_summary", lake_partition("smoke", key)).iloc[-1]
    assert summary["bars_per_year"] == pytest.approx(bars_per_year)
    html = (lake.root / summary["report_path"]).read_text()
    assert f"Sharpe annualized with {bars_per_year:g} bars" in html
    report = himari(env, "report", "smoke", "-d", key)
    assert report.returncode == 0 and str(summary["verdict"]) in report.stdout, report.stdout + report.stderr


@pytest.mark.timeout(900)
def test_hourly_eurusd_ingests_under_24_5_and_is_rejected_under_24_7(env, tmp_path):
    from backtesting.test import EURUSD

    csv = generic_csv(EURUSD, tmp_path / "EURUSD-1h.csv")
    out = himari(env, "ingest", str(csv), "--symbol", "EURUSD", "--timeframe", "1h", "--no-materialize")
    assert out.returncode == 1
    assert "rejected, nothing changed" in out.stderr and "EURUSD-1h.csv, row 62: rule gap" in out.stderr
    assert "48 missing 1h bar(s) of calendar 24/7" in out.stderr  # the first weekend
    assert not raw_folder(env, "EURUSD", "1h").exists()

    out = himari(env, "ingest", str(csv), "--symbol", "EURUSD", "--timeframe", "1h", "--calendar", "24/5")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "calendar 24/5, 2 gap(s) (longest 24 bars" in out.stdout and "data_job ok" in out.stdout
    lake = Lake(env["HIMARI_LAKE_ROOT"])
    raw = lake.latest(RAW, "EURUSD_1h")
    meta = raw.metadata
    assert meta["calendar"] == "24/5" and 6200 < meta["bars_per_year"] < 6300
    # the file's only gaps are the Christmas and New Year holidays (one trading day each)
    assert [(g["before"][:10], g["missing_bars"]) for g in meta["gaps"]] == [
        ("2017-12-22", 24),
        ("2017-12-29", 24),
    ]
    assert len(meta["late_prints"]) == 2  # two one-tick bars at 17:00 New York on Fridays, kept
    bars = lake.read_table(RAW, "EURUSD_1h")
    assert len(bars) == 5000 and int(bars["gap_before"].sum()) == 48
    assert "dataset.json" in raw.inputs and lake.latest(SPLITS, "EURUSD_1h") is not None

    listing = json.loads(himari(env, "datasets", "--json").stdout)
    (row,) = [r for r in listing if r["dataset"] == "EURUSD_1h"]
    assert row["calendar"] == "24/5" and row["bars"] == 5000 and row["gaps"] == 2
    assert row["longest_gap_bars"] == 24 and row["bars_per_year"] == meta["bars_per_year"]
    assert row["latest_version"] == raw.short
    text = himari(env, "datasets").stdout
    assert "EURUSD_1h" in text and "24/5" in text and "6,261" in text
    train_and_report(env, "EURUSD_1h", meta["bars_per_year"])


@pytest.mark.timeout(300)
def test_daily_goog_fits_the_nyse_calendar(env, tmp_path):
    from backtesting.test import GOOG

    csv = generic_csv(GOOG, tmp_path / "GOOG-1d.csv")
    args = ["ingest", str(csv), "--symbol", "GOOG", "--timeframe", "1d", "--no-materialize"]
    out = himari(env, *args)
    assert out.returncode == 1 and "row 4: rule gap" in out.stderr  # 24/7: the first weekend is a gap
    out = himari(env, *args, "--calendar", "XNYS")
    assert out.returncode == 0, out.stdout + out.stderr
    # every bar is an NYSE session and no session is missing: weekends and holidays are closures
    assert "2148 bars in total, calendar XNYS, 0 gap(s)" in out.stdout
    assert _materialize_raw(tmp_path, env, "GOOG_1d").success  # the data job validates the same way
    meta = Lake(env["HIMARI_LAKE_ROOT"]).latest(RAW, "GOOG_1d").metadata
    assert meta["calendar"] == "XNYS" and 250 < meta["bars_per_year"] < 253 and meta["gap_count"] == 0


@pytest.mark.timeout(900)
def test_daily_goog_splits_trains_and_reports(env, tmp_path):
    from backtesting.test import GOOG

    csv = generic_csv(GOOG, tmp_path / "GOOG-1d.csv")
    out = himari(env, "ingest", str(csv), "--symbol", "GOOG", "--timeframe", "1d", "--calendar", "XNYS")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "data_job ok" in out.stdout
    lake = Lake(env["HIMARI_LAKE_ROOT"])
    assert lake.latest(SPLITS, "GOOG_1d") is not None
    train_and_report(env, "GOOG_1d", lake.latest(RAW, "GOOG_1d").metadata["bars_per_year"])


def _materialize_raw(tmp_path: Path, env: dict, key: str) -> dg.ExecuteInProcessResult:
    lake = env["HIMARI_LAKE_ROOT"]
    return materialize_data(key, data_resources(lake, raw_dir=str(Path(lake) / "raw")), selection=[RAW])


@pytest.mark.timeout(300)
def test_binance_outage_ingests_by_default_and_a_long_one_needs_the_stored_opt_in(env, tmp_path):
    bars = synthetic_bars("2024-11-01", "2024-12-15")
    short = write_binance_csv(bars.drop(index=range(200, 203)), tmp_path / "BTCUSDT-1h-2024-11.csv")
    out = himari(env, "ingest", str(short), "--symbol", "BTCUSDT", "--timeframe", "1h", "--no-materialize")
    assert out.returncode == 0, out.stderr
    assert "1 gap(s) (longest 3 bars; policy short, limit 24)" in out.stdout

    long = write_binance_csv(bars.drop(index=range(200, 240)), tmp_path / "ETHUSDT-1h-2024-11.csv")
    args = ["ingest", str(long), "--symbol", "ETHUSDT", "--timeframe", "1h", "--no-materialize"]
    out = himari(env, *args)
    assert out.returncode == 1
    assert "ETHUSDT-1h-2024-11.csv, row 201: rule gap: 40 missing 1h bar(s)" in out.stderr
    assert "accepts up to 24" in out.stderr
    out = himari(env, *args, "--gap-policy", "any")
    assert out.returncode == 0 and "1 gap(s) (longest 40 bars; policy any" in out.stdout
    stored = json.loads((raw_folder(env, "ETHUSDT", "1h") / "dataset.json").read_text())
    assert stored["gap_policy"] == "any" and stored["calendar"] == "24/7"
    # the data job (as the sensor and the schedules run it) validates with the stored policy
    res = _materialize_raw(tmp_path, env, "ETHUSDT_1h")
    assert res.success
    meta = Lake(env["HIMARI_LAKE_ROOT"]).latest(RAW, "ETHUSDT_1h").metadata
    assert meta["gap_policy"] == "any" and meta["longest_gap_bars"] == 40 and meta["gaps"][0]["row"] == 201


@pytest.mark.timeout(300)
def test_bad_options_and_files_get_clear_errors(env, tmp_path):
    good = write_binance_csv(synthetic_bars("2024-12-01", "2024-12-03"), tmp_path / "good.csv")
    base = ["--symbol", "BTCUSDT", "--timeframe", "1h", "--no-materialize"]
    cases = {
        "unknown gap policy 'foo'": ["ingest", str(good), *base, "--gap-policy", "foo"],
        "unknown calendar 'FOO'": ["ingest", str(good), *base, "--calendar", "FOO"],
        "invalid symbol": ["ingest", str(good), "--symbol", "BTCUSDT\n", "--timeframe", "1h"],
    }
    notes = tmp_path / "notes.txt"
    notes.write_text(good.read_text())
    hidden = tmp_path / ".hidden.csv"
    hidden.write_text(good.read_text())
    for f in (notes, hidden):
        cases[f"{f}: not a file the data job reads"] = ["ingest", str(f), *base]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        "timestamp,open,high,low,close,volume,note\n2024-01-01,1,2,1,1,1,café\n".encode("latin-1")
    )
    cases["latin.csv: rule encoding: not UTF-8"] = ["ingest", str(latin), *base]
    for expected, args in cases.items():
        out = himari(env, *args)
        assert out.returncode != 0 and expected in out.stderr, (args, out.stderr)
    assert not (Path(env["HIMARI_LAKE_ROOT"]) / "raw").exists()
    assert himari(env, "ingest", str(good), *base).returncode == 0  # the same file, correctly named


@pytest.mark.timeout(300)
def test_concurrent_ingests_into_one_dataset_never_duplicate_bars(env, tmp_path):
    bars = synthetic_bars("2024-12-01", "2024-12-20")
    a = write_binance_csv(bars.iloc[:300], tmp_path / "a.csv")
    b = write_binance_csv(bars.iloc[200:], tmp_path / "b.csv")  # overlaps a by 100 bars
    base = ["--symbol", "BTCUSDT", "--timeframe", "1h", "--no-materialize"]
    procs = [
        subprocess.Popen(
            [HIMARI, "ingest", str(p), *base], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for p in (a, b)
    ]
    outs = [p.communicate(timeout=200) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    err = next(o[1].decode() for p, o in zip(procs, outs, strict=True) if p.returncode == 1)
    assert "duplicate_timestamp" in err and "nothing changed" in err
    files = sources.dataset_files("BTCUSDT_1h", Path(env["HIMARI_LAKE_ROOT"]) / "raw")
    assert len(files) == 1
    loaded = sources.load_dataset("BTCUSDT_1h", Path(env["HIMARI_LAKE_ROOT"]) / "raw")
    assert loaded.bars["timestamp"].is_unique

    # serialized, not raced: while the lock is held the ingest waits and copies nothing
    lock = FileLock(str(Path(env["HIMARI_LAKE_ROOT"]) / ".locks" / "SOLUSDT_1h.lock"))
    lock.acquire()
    proc = subprocess.Popen(
        [HIMARI, "ingest", str(a), "--symbol", "SOLUSDT", "--timeframe", "1h", "--no-materialize"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(8)
        assert proc.poll() is None and not raw_folder(env, "SOLUSDT", "1h").exists()
    finally:
        lock.release()
    stdout, _ = proc.communicate(timeout=200)
    assert proc.returncode == 0 and "waiting" in stdout and raw_folder(env, "SOLUSDT", "1h").exists()


@pytest.mark.timeout(600)
def test_failed_materialization_rolls_back_what_ingest_copied(env, tmp_path):
    # too short to split
    tiny = write_binance_csv(synthetic_bars("2024-12-01", "2024-12-03"), tmp_path / "tiny.csv")
    out = himari(env, "ingest", str(tiny), "--symbol", "BTCUSDT", "--timeframe", "1h", "--calendar", "24/7")
    assert out.returncode == 1, out.stdout
    assert "rolled back" in out.stderr and "tiny.csv" in out.stderr and "dataset.json" in out.stderr
    assert not raw_folder(env, "BTCUSDT", "1h").exists()
    assert np.all([not p.name.endswith(".csv") for p in (Path(env["HIMARI_LAKE_ROOT"])).rglob("*")])
