"""The sensor and the daily schedule use each dataset's stored settings (calendar) from dataset.json."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from himari_pipeline.defs.automation import CALENDAR_TAG, daily_append_schedule, raw_files_sensor
from himari_pipeline.defs.resources import PipelineSettings
from himari_pipeline.market.settings import DatasetSettings, write_settings
from himari_pipeline_tests.builders import synthetic_bars, write_binance_csv


@pytest.fixture
def lake(lake_env):
    return lake_env / "lake"


def _schedule_at(instance, when: dt.datetime) -> list[str]:
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
        result = daily_append_schedule(ctx)
    return [] if isinstance(result, dg.SkipReason) else [r.partition_key for r in result]


def test_daily_schedule_skips_a_dataset_whose_exchange_was_closed(lake):
    folder = lake / "raw" / "GOOG" / "1d"
    write_settings(folder, DatasetSettings(calendar="XNYS"), "1d")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("datasets", ["GOOG_1d", "BTCUSDT_1h"])
        # Saturday 00:15 UTC: Friday's session bar has just closed
        assert _schedule_at(instance, dt.datetime(2025, 3, 8, 0, 15, tzinfo=dt.UTC)) == [
            "BTCUSDT_1h",
            "GOOG_1d",
        ]
        # Sunday and Monday 00:15 UTC: no NYSE bar closed in the last 24 hours; crypto runs every day
        for day in (9, 10):
            assert _schedule_at(instance, dt.datetime(2025, 3, day, 0, 15, tzinfo=dt.UTC)) == ["BTCUSDT_1h"]
        # Good Friday 2025 (April 18) is an NYSE holiday: nothing for GOOG at 00:15 on Saturday the 19th
        assert _schedule_at(instance, dt.datetime(2025, 4, 19, 0, 15, tzinfo=dt.UTC)) == ["BTCUSDT_1h"]
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2025, 3, 8, 0, 15, tzinfo=dt.UTC)
        ) as ctx:
            tags = {r.partition_key: r.tags[CALENDAR_TAG] for r in daily_append_schedule(ctx)}
        assert tags == {"GOOG_1d": "XNYS", "BTCUSDT_1h": "24/7"}


def test_sensor_reruns_a_dataset_when_its_stored_settings_change(lake):
    raw = lake / "raw"
    folder = raw / "EURUSD" / "1h"
    folder.mkdir(parents=True)
    write_binance_csv(synthetic_bars("2024-12-02", "2024-12-06"), folder / "eur.csv")
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor=None):
        ctx = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"settings": PipelineSettings(raw_dir=str(raw))}
        )
        return raw_files_sensor(ctx)

    first = tick()
    (req,) = first.run_requests
    assert req.tags[CALENDAR_TAG] == "24/7" and list(json.loads(first.cursor)["EURUSD_1h"]) == ["eur.csv"]
    assert tick(first.cursor).run_requests == []  # nothing changed
    write_settings(folder, DatasetSettings(calendar="24/5"), "1h")
    changed = tick(first.cursor)
    (req2,) = changed.run_requests
    assert req2.run_key != req.run_key and req2.tags[CALENDAR_TAG] == "24/5"
    assert sorted(json.loads(changed.cursor)["EURUSD_1h"]) == ["dataset.json", "eur.csv"]
    # a folder holding only settings is not a dataset
    write_settings(raw / "EMPTY" / "1h", DatasetSettings(), "1h")
    assert [r.partition_key for r in tick().run_requests] == ["EURUSD_1h"]
