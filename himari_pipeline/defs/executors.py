"""The step executor, chosen by configuration (``HIMARI_EXECUTOR``), never by editing the jobs.

- ``in_process`` (default): every step in the run's process (package: dagster);
- ``multiprocess``: one process per step on the run's machine (dagster), forked from a server that
  has imported the code location once (``start_method: forkserver``), so a step does not pay the
  definitions' import (about 8 s) again; ``start_method: {spawn: {}}`` in the config restores spawn;
- ``k8s``: one Kubernetes Job per step (dagster-k8s);
- ``celery``: one Celery task per step, pulled by workers (dagster-celery).

``HIMARI_EXECUTOR_CONFIG`` (JSON or YAML mapping) is the executor's default config, e.g.
``{"job_namespace": "himari", "max_concurrent": 8}`` for k8s or
``{"broker": "redis://broker:6379/0", "backend": "redis://broker:6379/1"}`` for celery;
``HIMARI_MAX_CONCURRENT`` caps the multiprocess executor. A cluster executor carries its defaults
itself (``configured``), so they apply to every run however it was created (launchpad, schedule,
sensor, backfill, ``execute_job``); run config given at launch time is merged over them key by key.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg
import yaml

EXECUTOR_ENV = "HIMARI_EXECUTOR"
CONFIG_ENV = "HIMARI_EXECUTOR_CONFIG"
MAX_CONCURRENT_ENV = "HIMARI_MAX_CONCURRENT"

#: name -> (module, attribute, pip package) for the executors that live in integration libraries
CLUSTER_EXECUTORS: dict[str, tuple[str, str, str]] = {
    "k8s": ("dagster_k8s", "k8s_job_executor", "dagster-k8s"),
    "celery": ("dagster_celery", "celery_executor", "dagster-celery"),
}
LOCAL_EXECUTORS = ("in_process", "multiprocess")


class ExecutorConfigError(ValueError):
    """``HIMARI_EXECUTOR`` names an unknown executor, its package is missing, or its config is bad."""


@dataclass(frozen=True)
class ExecutorChoice:
    """An executor and the jobs' default run config for it (pass both to ``define_asset_job``)."""

    name: str
    executor_def: dg.ExecutorDefinition
    run_config: dict = field(default_factory=dict)


def _library_version() -> str:
    """The integration-library version that matches this dagster (1.13.27 -> 0.29.27)."""
    major, minor, patch = (dg.__version__.split(".") + ["0", "0"])[:3]
    return f"0.{int(minor) + 16}.{patch}" if major == "1" else "<matching dagster " + dg.__version__ + ">"


def _executor_config(env: Mapping[str, str]) -> dict:
    raw = env.get(CONFIG_ENV, "").strip()
    if not raw:
        return {}
    try:
        cfg = yaml.safe_load(raw)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ExecutorConfigError(f"{CONFIG_ENV} is not valid JSON/YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ExecutorConfigError(f"{CONFIG_ENV} must be a mapping, got {type(cfg).__name__}")
    return cfg


def executor_from_env(env: Mapping[str, str] | None = None) -> ExecutorChoice:
    """The executor named by ``HIMARI_EXECUTOR`` (default ``in_process``) with its default run config."""
    env = os.environ if env is None else env
    name = env.get(EXECUTOR_ENV, "").strip().lower().replace("-", "_") or "in_process"
    cfg = _executor_config(env)
    if name == "in_process":
        return ExecutorChoice(name, LOCAL_EXECUTOR, {"execution": {"config": {"in_process": cfg}}})
    if name == "multiprocess":
        if MAX_CONCURRENT_ENV in env:
            cfg = {**cfg, "max_concurrent": int(env[MAX_CONCURRENT_ENV])}
        return ExecutorChoice(name, LOCAL_EXECUTOR, {"execution": {"config": {"multiprocess": cfg}}})
    if name not in CLUSTER_EXECUTORS:
        known = ", ".join([*LOCAL_EXECUTORS, *CLUSTER_EXECUTORS])
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={name!r} is not an executor; expected one of: {known}")
    module, attr, package = CLUSTER_EXECUTORS[name]
    try:
        executor_def = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}={name} needs the {package} package, which is not installed: "
            f"pip install '{package}=={_library_version()}' (in the image that runs the code location)"
        ) from exc
    _validate(name, executor_def, {"execution": {"config": cfg}} if cfg else {})
    if not cfg:
        return ExecutorChoice(name, executor_def)
    return ExecutorChoice(name, with_defaults(executor_def, cfg))


def _forkserver_by_default(run_cfg: Mapping | None) -> dict:
    """``multi_or_in_process`` config whose ``multiprocess`` choice starts steps from a forkserver
    unless it names a ``start_method`` itself (the forkserver preloads the job's code location)."""
    cfg = dict(run_cfg or {"multiprocess": {}})
    if "multiprocess" in cfg and "start_method" not in (cfg["multiprocess"] or {}):
        cfg["multiprocess"] = {**(cfg["multiprocess"] or {}), "start_method": {"forkserver": {}}}
    return cfg


#: in-process or multiprocess steps; multiprocess forks each step from a preloaded forkserver
LOCAL_EXECUTOR: dg.ExecutorDefinition = dg.multi_or_in_process_executor.configured(
    _forkserver_by_default,
    name="multi_or_in_process_executor",
    config_schema=dg.multi_or_in_process_executor.config_schema,
)


def _merged(defaults: Mapping, override: Mapping | None) -> dict:
    """``defaults`` with ``override`` laid over it, nested mappings merged key by key."""
    out = dict(defaults)
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def with_defaults(executor_def: dg.ExecutorDefinition, defaults: dict) -> dg.ExecutorDefinition:
    """``executor_def`` whose config defaults to ``defaults`` for every run, launch-time config merged over.

    A partitioned job's ``config=`` reaches only runs made from a partition by Dagster's own launchers;
    the executor's own defaults also reach ``execute_job`` and ``dagster job execute``. The merged
    config is validated against the executor's schema when the run starts.
    """
    return executor_def.configured(lambda run_cfg: _merged(defaults, run_cfg))


@dg.op
def _probe_op() -> None:
    """The one step of the probe job that validates executor config."""


def _validate(name: str, executor_def: dg.ExecutorDefinition, run_config: dict) -> None:
    """Check ``run_config`` against the executor's schema now, not when a run reaches the cluster."""
    probe = dg.GraphDefinition(name="himari_executor_probe", node_defs=[_probe_op]).to_job(
        executor_def=executor_def
    )
    try:
        dg.validate_run_config(probe, run_config)
    except dg.DagsterInvalidConfigError as exc:
        reason = str(exc).split(" Expected:")[0]  # the schema dump that follows is hundreds of lines
        raise ExecutorConfigError(f"{CONFIG_ENV} is not valid for the {name} executor: {reason}") from exc
