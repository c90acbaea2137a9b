"""Materialize the pipeline from Python or the CLI, into the persistent instance the UI reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from himari_pipeline.defs.partitions import datasets_partitions
from himari_pipeline.market.bars import parse_dataset_key


@dataclass
class CheckOutcome:
    """One asset check evaluation of a run."""

    name: str  # asset:check
    passed: bool
    severity: str  # ERROR or WARN
    description: str = ""


@dataclass
class RunOutcome:
    """What one job run did: ``success`` is the Dagster run's status (a WARN check does not fail it)."""

    job: str
    partition: str | None
    success: bool
    run_id: str
    checks: list[CheckOutcome] = field(default_factory=list)
    error: str | None = None

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def failed(self, check_name: str) -> bool:
        return any(not c.passed and c.name.endswith(f":{check_name}") for c in self.checks)


def ensure_partitions(instance: dg.DagsterInstance, keys: list[str]) -> None:
    """Register dataset partitions (validated names) that the instance does not know yet."""
    for key in keys:
        parse_dataset_key(key)
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(datasets_partitions.name, new)


def run_job(
    instance: dg.DagsterInstance,
    job_name: str,
    partition: str | None = None,
    run_config: dict | None = None,
    quiet: bool = False,
) -> RunOutcome:
    """Execute ``job_name`` in process (one partition) and summarise the result.

    ``quiet`` replaces Dagster's console logs by one short line per step, check and asset message.
    """
    from himari_pipeline.definitions import defs
    from himari_pipeline.defs.progress import QUIET_RUN_CONFIG

    job = defs.resolve_job_def(job_name)
    config = {**(QUIET_RUN_CONFIG if quiet else {}), **(run_config or {})}
    res = job.execute_in_process(
        instance=instance, partition_key=partition, run_config=config, raise_on_error=False
    )
    checks = [
        CheckOutcome(
            f"{d.asset_key.to_user_string()}:{d.check_name}", d.passed, d.severity.value, d.description or ""
        )
        for d in (
            e.asset_check_evaluation_data
            for e in res.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        )
    ]
    error = None
    if not res.success:
        errs = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"]
        if errs:
            info = errs[0].step_failure_data.error
            error = f"{errs[0].step_key}: {_root_message(info)}"
    return RunOutcome(job_name, partition, res.success, res.run_id, checks, error)


def _root_message(info) -> str:
    """The innermost user error message of a SerializableErrorInfo chain."""
    while info.cause is not None:
        info = info.cause
    return info.message.strip()
