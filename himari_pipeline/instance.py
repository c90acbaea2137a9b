"""The persistent Dagster instance inside the project (so CLI runs show up in the UI)."""

from __future__ import annotations

import os
from pathlib import Path

from himari_pipeline.config import dagster_home

DAGSTER_YAML = """\
# Written by himari on first use. Lake writers share one pool of size 1 (DuckDB: one writer per file).
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    """Create ``DAGSTER_HOME`` (with a dagster.yaml) if needed and export it."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance():
    """The project's persistent DagsterInstance."""
    import dagster as dg

    ensure_dagster_home()
    return dg.DagsterInstance.get()
