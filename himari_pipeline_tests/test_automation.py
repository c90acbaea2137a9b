"""The raw-file sensor and the schedules, evaluated in process against a real (ephemeral) instance."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os

import dagster as dg
import pandas as pd
import pytest

from himari_pipeline.defs.automation import (
    SCHEDULES,
    SENSORS,
    WEEKLY_JOBS,
    WEEKLY_SCHEDULES,
    daily_append_schedule,
    file_state_key,
    raw_files_sensor,
    scan_raw_files,
    weekly_retrain_schedule,
)
from himari_pipeline.defs.data_assets import DATA_ASSETS
from himari_pipeline.defs.data_checks import DATA_CHECKS
from himari_pipeline.defs.jobs import data_job, train_job
from himari_pipeline.defs.partitions import training_key
from himari_pipeline.defs.resources import PipelineSettings
from himari_pipeline.defs.training_assets import TRAINING_ASSETS, experiments_partitions
from himari_pipeline.rl.experiments import load_experiment
from himari_pipeline_tests.builders import data_resources, synthetic_bars, write_binance_csv


@pytest.fixture
def raw(tmp_path):
    return tmp_path / "raw"


def _bars(days: int) -> pd.DataFrame:
    end = (pd.Timestamp("2024-12-01") + pd.Timedelta(days=days)).strftime("%Y-%m-%d")
    return synthetic_bars("2024-12-01", end, seed=1)


def _tick(instance, raw, cursor=None):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"settings": PipelineSettings(raw_dir=str(raw))}
    )
    return raw_files_sensor(ctx)


def _requests(result) -> list[dg.RunRequest]:
    return list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []


def test_sensor_adds_the_partition_and_requests_one_run_per_file_state(raw):
    instance = dg.DagsterInstance.ephemeral()
    # no folder, then an empty folder: nothing to do
    assert _requests(_tick(instance, raw)) == []
    (raw / "BTCUSDT" / "1h").mkdir(parents=True)
    empty = _tick(instance, raw)
    assert _requests(empty) == [] and empty.skip_reason is not None

    # a file is dropped: the dataset partition is added and one data_job run requested
    path = write_binance_csv(_bars(2), raw / "BTCUSDT" / "1h" / "BTCUSDT-1h-2024-12.csv")
    first = _tick(instance, raw, empty.cursor)
    (req,) = _requests(first)
    assert req.partition_key == "BTCUSDT_1h"
    st = os.stat(path)
    state = {"BTCUSDT-1h-2024-12.csv": [st.st_size, st.st_mtime_ns]}
    assert req.run_key == file_state_key("BTCUSDT_1h", state)
    assert req.tags["himari/trigger"] == "raw_files_sensor"
    (add,) = first.dynamic_partitions_requests
    assert add.partitions_def_name == "datasets" and list(add.partition_keys) == ["BTCUSDT_1h"]
    assert json.loads(first.cursor) == {"BTCUSDT_1h": state}

    # the same file state: nothing, again
    instance.add_dynamic_partitions("datasets", ["BTCUSDT_1h"])  # what the daemon does with the request
    same = _tick(instance, raw, first.cursor)
    assert _requests(same) == [] and same.cursor == first.cursor

    # the file grows (next day's bars) and a second file appears: one new run, no partition request
    write_binance_csv(_bars(3), path)
    write_binance_csv(_bars(4).iloc[-24:], raw / "BTCUSDT" / "1h" / "BTCUSDT-1h-2024-12-05.csv")
    changed = _tick(instance, raw, same.cursor)
    (req2,) = _requests(changed)
    assert req2.partition_key == "BTCUSDT_1h" and req2.run_key != req.run_key
    assert changed.dynamic_partitions_requests == []
    assert sorted(json.loads(changed.cursor)["BTCUSDT_1h"]) == ["BTCUSDT-1h-2024-12-05.csv", path.name]
    # the run key depends on the file state only: a lost cursor re-requests the same key (deduped)
    assert [r.run_key for r in _requests(_tick(instance, raw))] == [req2.run_key]


def test_sensor_skips_invalid_folders_and_keeps_going(raw):
    good = raw / "ETHUSDT" / "1h"
    good.mkdir(parents=True)
    write_binance_csv(_bars(1), good / "eth.csv")
    for bad in ("bad name/1h", "BTC_USDT/1h", "BTCUSDT/7x", "SYNTH-NULL/1h", "x..y/1h"):
        folder = raw / bad
        folder.mkdir(parents=True, exist_ok=True)
        write_binance_csv(_bars(1), folder / "x.csv")
    (raw / "ETHUSDT" / "1h" / "notes.txt").write_text("not a bar file")
    found, skipped = scan_raw_files(raw)
    assert list(found) == ["ETHUSDT_1h"] and list(found["ETHUSDT_1h"]) == ["eth.csv"]
    assert len(skipped) == 5
    assert any("BTCUSDT/7x" in s and "unknown timeframe" in s for s in skipped)
    assert any("SYNTH-NULL" in s and "reserved" in s for s in skipped)
    result = _tick(dg.DagsterInstance.ephemeral(), raw)
    assert [r.partition_key for r in _requests(result)] == ["ETHUSDT_1h"]
    assert list(json.loads(result.cursor)) == ["ETHUSDT_1h"]


def test_sensor_survives_a_corrupt_cursor(raw):
    (raw / "ETHUSDT" / "1h").mkdir(parents=True)
    write_binance_csv(_bars(1), raw / "ETHUSDT" / "1h" / "eth.csv")
    assert len(_requests(_tick(dg.DagsterInstance.ephemeral(), raw, cursor="{not json"))) == 1


@pytest.fixture
def instance():
    """A real instance with an on-disk ref (schedule contexts need one)."""
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def schedule_context(instance):
    """``at(when)``: a schedule context at ``when``, closed after the test (it opens its own instance,
    which would otherwise stay Dagster's current one after this instance is gone)."""
    with contextlib.ExitStack() as stack:
        yield lambda when: stack.enter_context(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        )


def test_daily_schedule_requests_every_known_dataset(instance, schedule_context):
    when = dt.datetime(2025, 3, 4, 0, 15, tzinfo=dt.UTC)
    ctx = schedule_context(when)
    assert isinstance(daily_append_schedule(ctx), dg.SkipReason)
    instance.add_dynamic_partitions("datasets", ["SYNTH-PLANTED_1h", "BTCUSDT_5m"])
    reqs = daily_append_schedule(ctx)
    assert [r.partition_key for r in reqs] == ["BTCUSDT_5m", "SYNTH-PLANTED_1h"]
    assert [r.run_key for r in reqs] == ["daily:2025-03-04:BTCUSDT_5m", "daily:2025-03-04:SYNTH-PLANTED_1h"]
    assert daily_append_schedule.cron_schedule == "15 0 * * *"
    assert daily_append_schedule.execution_timezone == "UTC" and daily_append_schedule.job_name == "data_job"


def test_weekly_schedules_request_each_experiment_on_its_default_dataset(instance, schedule_context):
    when = dt.datetime(2025, 3, 2, 2, 0, tzinfo=dt.UTC)
    ctx = schedule_context(when)
    revalidate = WEEKLY_SCHEDULES[1]
    # no dataset registered yet: nothing to train, nothing trained to re-validate
    assert isinstance(weekly_retrain_schedule(ctx), dg.SkipReason)
    instance.add_dynamic_partitions("datasets", ["SYNTH-NULL_1h", "BTCUSDT_1h"])
    reqs = weekly_retrain_schedule(ctx)
    expected = sorted(
        str(training_key(n, "SYNTH-NULL_1h"))
        for n in experiments_partitions.get_partition_keys()
        if load_experiment(n).dataset == "SYNTH-NULL_1h"
    )
    # only experiments whose default dataset is registered; not the whole experiment x dataset product
    assert expected and [r.partition_key for r in reqs] == expected
    assert all(r.run_key == f"weekly:train_job:2025-03-02:{r.partition_key}" for r in reqs)
    assert isinstance(revalidate(ctx), dg.SkipReason)  # nothing trained yet
    assert revalidate.name == "weekly_revalidate_schedule" and revalidate.job_name == "validate_job"
    assert weekly_retrain_schedule.name == "weekly_retrain_schedule"
    assert weekly_retrain_schedule.job_name == "train_job" and WEEKLY_JOBS[0][0] is train_job
    assert weekly_retrain_schedule.cron_schedule == "0 2 * * 0"  # Sundays, 02:00 UTC


def test_sensor_and_schedules_load_in_a_definitions_object(tmp_path):
    defs = dg.Definitions(
        assets=[*DATA_ASSETS, *TRAINING_ASSETS],
        asset_checks=DATA_CHECKS,
        jobs=[data_job, train_job],
        sensors=SENSORS,
        schedules=SCHEDULES,
        resources=data_resources(tmp_path / "lake"),
    )
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert repo.get_sensor_def("raw_files_sensor").job_name == "data_job"
    assert {s.name for s in repo.schedule_defs} == {
        "daily_append_schedule",
        "weekly_retrain_schedule",
        "weekly_revalidate_schedule",
    }
