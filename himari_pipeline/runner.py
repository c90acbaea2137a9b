"""Materialize the pipeline from Python or the CLI, into the persistent instance the UI reads."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from himari_pipeline.defs.partitions import datasets_partitions
from himari_pipeline.market.bars import parse_dataset_key


@dataclass
class RunOutcome:
    """What one job run did."""

    job: str
    partition: str | None
    success: bool
    run_id: str
    failed_checks: list[str]
    error: str | None = None


def ensure_partitions(instance: dg.DagsterInstance, keys: list[str]) -> None:
    """Register dataset partitions (validated names) that the instance does not know yet."""
    for key in keys:
        parse_dataset_key(key)
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(datasets_partitions.name, new)


def run_job(
    instance: dg.DagsterInstance, job_name: str, partition: str | None = None, run_config: dict | None = None
) -> RunOutcome:
    """Execute ``job_name`` in process (one partition) and summarise the result."""
    from himari_pipeline.definitions import defs

    job = defs.resolve_job_def(job_name)
    res = job.execute_in_process(
        instance=instance, partition_key=partition, run_config=run_config or {}, raise_on_error=False
    )
    failed = [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
        for e in res.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    error = None
    if not res.success:
        errs = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"]
        if errs:
            info = errs[0].step_failure_data.error
            error = f"{errs[0].step_key}: {_root_message(info)}"
    return RunOutcome(job_name, partition, res.success and not failed, res.run_id, failed, error)


def _root_message(info) -> str:
    """The innermost user error message of a SerializableErrorInfo chain."""
    while info.cause is not None:
        info = info.cause
    return info.message.strip()
