"""Automation: a sensor on the raw-file folder, a daily append schedule and a weekly retrain schedule.

* ``raw_files_sensor`` watches ``<raw>/<SYMBOL>/<TIMEFRAME>/`` for new or changed files (cursor: JSON
  ``{dataset: {file name: [size, mtime_ns]}}``), adds the dataset partition when it is new and
  requests one ``data_job`` run per affected dataset. The run key is a hash of the dataset's file
  state, so one file state never triggers twice; folders that are not valid dataset names are
  skipped with a log line.
  A dataset's stored settings (``dataset.json``: calendar, gap policy) are part of its file state,
  so changing them (``himari ingest --calendar ...``) re-runs the dataset; runs are tagged with the
  calendar.
* ``daily_append_schedule`` (00:15 UTC) requests ``data_job`` for every dataset partition the
  instance knows whose trading calendar (stored with the dataset) had a bar closing in the 24 hours
  before: new bars are appended (see ``data_assets``), unchanged data gives the same versions; a
  dataset whose exchange was closed all day (weekend, holiday) is skipped.
* ``weekly_retrain_schedule`` (Sunday 02:00 UTC) requests ``train_job`` for every experiment on its
  default dataset (when registered) and every experiment x dataset pair trained before;
  ``weekly_revalidate_schedule`` (Sunday 08:00 UTC) requests ``validate_job`` for every trained pair.
  :data:`WEEKLY_JOBS` lists (job, cron, name, trained pairs only); each gets a weekly schedule.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd

from himari_pipeline import sources
from himari_pipeline.config import raw_dir
from himari_pipeline.defs.jobs import data_job, train_job, validate_job
from himari_pipeline.defs.partitions import datasets_partitions, retrain_keys
from himari_pipeline.defs.resources import PipelineSettings
from himari_pipeline.market import calendars
from himari_pipeline.market.bars import dataset_key, parse_dataset_key
from himari_pipeline.market.settings import settings_path

FileState = dict[str, list[int]]  # file name -> [size, mtime_ns]

RAW_SENSOR_INTERVAL_S = 60
DAILY_APPEND_CRON = "15 0 * * *"
#: Jobs run weekly on experiment x dataset partitions, with their cron (UTC) and whether only pairs that
#: already have checkpoints qualify (see :func:`retrain_keys`). Later jobs start after earlier ones finish.
WEEKLY_JOBS: list[tuple[dg.UnresolvedAssetJobDefinition, str, str, bool]] = [
    # Sunday 02:00 UTC: retrain every experiment on its default dataset and every pair trained before
    (train_job, "0 2 * * 0", "weekly_retrain_schedule", False),
    # Sunday 08:00 UTC: re-validate and gate every trained pair
    (validate_job, "0 8 * * 0", "weekly_revalidate_schedule", True),
]
TRIGGER_TAG = "himari/trigger"


def scan_raw_files(root: Path) -> tuple[dict[str, FileState], list[str]]:
    """Supported files per dataset key under ``root/<SYMBOL>/<TIMEFRAME>/`` and the folders skipped (why)."""
    found: dict[str, FileState] = {}
    skipped: list[str] = []
    root = Path(root)
    if not root.is_dir():
        return found, skipped
    for sym_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for tf_dir in sorted(p for p in sym_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                key = dataset_key(sym_dir.name, tf_dir.name)
            except ValueError as exc:
                skipped.append(f"{tf_dir}: {exc}")
                continue
            if sources.is_synthetic(key):
                skipped.append(f"{tf_dir}: {sym_dir.name} is reserved for the built-in synthetic market")
                continue
            files: FileState = {}
            stored = settings_path(tf_dir)
            for path in [*sources.dataset_files(key, root), *([stored] if stored.is_file() else [])]:
                try:
                    st = os.stat(path)
                except OSError:  # removed while scanning
                    continue
                files[path.name] = [int(st.st_size), int(st.st_mtime_ns)]
            if set(files) - {stored.name}:
                found[key] = files
    return found, skipped


def file_state_key(key: str, files: FileState) -> str:
    """Run key of one dataset's file state: the same files (names, sizes, mtimes) give the same key."""
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    return f"{key}:{digest}"


def _load_cursor(cursor: str | None) -> dict[str, FileState]:
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


@dg.sensor(
    name="raw_files_sensor",
    job=data_job,
    minimum_interval_seconds=RAW_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New or changed files in data_lake/raw/<SYMBOL>/<TIMEFRAME>/ add the dataset partition "
    "(if new) and run data_job for it, once per file state.",
)
def raw_files_sensor(context: dg.SensorEvaluationContext, settings: PipelineSettings):
    root = Path(settings.raw_dir or raw_dir())
    seen = _load_cursor(context.cursor)
    current, skipped = scan_raw_files(root)
    for reason in skipped:
        context.log.warning(f"raw_files_sensor: skipped {reason}")
    cursor = json.dumps(current, sort_keys=True)
    changed = sorted(k for k, files in current.items() if seen.get(k) != files)
    if not changed:
        return dg.SensorResult(skip_reason=f"no new or changed files in {root}", cursor=cursor)
    known = set(context.instance.get_dynamic_partitions(datasets_partitions.name))
    new = [k for k in changed if k not in known]
    for key in changed:
        context.log.info(
            f"raw_files_sensor: {key} {'new' if key in new else 'changed'}: {sorted(current[key])}"
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=key,
                run_key=file_state_key(key, current[key]),
                tags={TRIGGER_TAG: "raw_files_sensor", **_calendar_tag(key, root)},
            )
            for key in changed
        ],
        dynamic_partitions_requests=[datasets_partitions.build_add_request(new)] if new else [],
        cursor=cursor,
    )


@dg.schedule(
    name="daily_append_schedule",
    cron_schedule=DAILY_APPEND_CRON,
    execution_timezone="UTC",
    job=data_job,
    description="Every day at 00:15 UTC: data_job for every dataset (new bars are appended; unchanged "
    "data keeps its versions).",
)
def daily_append_schedule(context: dg.ScheduleEvaluationContext):
    keys = sorted(context.instance.get_dynamic_partitions(datasets_partitions.name))
    if not keys:
        return dg.SkipReason("no dataset partitions yet")
    day, root = _day(context), raw_dir()
    requests, closed = [], []
    for k in keys:
        if context.scheduled_execution_time is not None and not had_bars(
            k, root, context.scheduled_execution_time
        ):
            closed.append(k)
            continue
        tags = {TRIGGER_TAG: "daily_append_schedule", **_calendar_tag(k, root)}
        requests.append(dg.RunRequest(partition_key=k, run_key=f"daily:{day}:{k}", tags=tags))
    if closed:
        context.log.info(f"daily_append_schedule: no bar closed in the last 24 h of the calendar of {closed}")
    return requests or dg.SkipReason(f"no bar closed in the last 24 hours on the calendars of {closed}")


CALENDAR_TAG = "himari/calendar"


def _calendar_tag(key: str, root: Path) -> dict[str, str]:
    """``{CALENDAR_TAG: calendar}`` from the dataset's stored settings (nothing if they are unreadable:
    the run itself then fails naming the settings file)."""
    try:
        return {CALENDAR_TAG: sources.dataset_calendar(key, root)}
    except ValueError:
        return {}


def had_bars(key: str, root: Path, when) -> bool:
    """Whether the dataset's calendar has a bar closing in the 24 hours before ``when``."""
    _, timeframe = parse_dataset_key(key)
    try:
        calendar = sources.dataset_calendar(key, root)
    except ValueError:
        return True  # unreadable settings: run, and let the run name the problem
    end = pd.Timestamp(when).tz_convert("UTC") if pd.Timestamp(when).tzinfo else pd.Timestamp(when, tz="UTC")
    return len(calendars.expected_closes(calendar, timeframe, end - pd.Timedelta(days=1), end)) > 0


def _day(context: dg.ScheduleEvaluationContext) -> str:
    when = context.scheduled_execution_time
    return when.strftime("%Y-%m-%d") if when is not None else "manual"


def weekly_schedule(
    job: dg.UnresolvedAssetJobDefinition, cron: str, name: str | None = None, trained_only: bool = False
) -> dg.ScheduleDefinition:
    """A weekly schedule requesting ``job`` for the experiment x dataset pairs of :func:`retrain_keys`."""
    sched_name = name or f"weekly_{job.name}_schedule"

    @dg.schedule(
        name=sched_name,
        cron_schedule=cron,
        execution_timezone="UTC",
        job=job,
        description=f"Weekly ({cron}, UTC): {job.name} for "
        + (
            "every trained experiment x dataset pair."
            if trained_only
            else "every experiment on its default dataset and every pair trained before."
        ),
    )
    def _weekly(context: dg.ScheduleEvaluationContext):
        keys = retrain_keys(context.instance, trained_only=trained_only)
        if not keys:
            return dg.SkipReason(f"{job.name}: no experiment x dataset pair to run yet")
        day = _day(context)
        return [
            dg.RunRequest(
                partition_key=k, run_key=f"weekly:{job.name}:{day}:{k}", tags={TRIGGER_TAG: sched_name}
            )
            for k in keys
        ]

    return _weekly


WEEKLY_SCHEDULES: list[dg.ScheduleDefinition] = [
    weekly_schedule(job, cron, name, trained_only) for job, cron, name, trained_only in WEEKLY_JOBS
]
weekly_retrain_schedule = WEEKLY_SCHEDULES[0]

SENSORS = [raw_files_sensor]
SCHEDULES = [daily_append_schedule, *WEEKLY_SCHEDULES]
