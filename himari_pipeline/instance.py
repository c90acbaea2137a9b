"""The persistent Dagster instance inside the project (so CLI runs show up in the UI)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from himari_pipeline.config import dagster_home
from himari_pipeline.storage.atomic import atomic_write_text

#: First line of a dagster.yaml that himari wrote (and may therefore rewrite when its defaults change).
MARKER = "# Written by himari"

DAGSTER_YAML = f"""\
{MARKER} (delete this line to keep your own edits: himari then never rewrites the file).
# Lake writers share one pool of size 1 (DuckDB: one writer process per file).
concurrency:
  pools:
    default_limit: 1
# Crash recovery, run by the daemon (`himari ui` starts it): a launched run that never starts is
# failed after start_timeout_seconds, and the pool slots of a finished run (e.g. one whose process
# was killed) are freed free_slots_after_run_end_seconds after it ended.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 15
  free_slots_after_run_end_seconds: 10
telemetry:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    """Create ``DAGSTER_HOME`` (with the project's dagster.yaml) if needed and export it.

    A dagster.yaml that himari wrote (first line :data:`MARKER`) is brought up to date; any other
    dagster.yaml is the operator's and is left alone.
    """
    home = dagster_home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists() or (cfg.read_text().startswith(MARKER) and cfg.read_text() != DAGSTER_YAML):
        atomic_write_text(cfg, DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(recover: bool = True):
    """The project's persistent DagsterInstance.

    With ``recover`` (the default), runs whose process is gone are marked failed and the pool slots
    they or other finished runs still hold are freed first (see :mod:`himari_pipeline.operations`),
    so a run killed earlier never blocks this one; what was repaired is printed to stderr.
    """
    import dagster as dg

    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    if recover:
        from himari_pipeline.operations import recover_stale_state

        try:
            repaired = recover_stale_state(instance)
        except Exception as exc:  # noqa: BLE001 - recovery must never stop the command itself
            repaired = [f"could not check for stale runs ({exc}); see `himari doctor`"]
        for line in repaired:
            print(f"himari: {line}", file=sys.stderr)
    return instance
