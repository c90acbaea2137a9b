"""Project paths and run profiles, overridable by environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The checkout (or installed project) root: where ``data_lake/`` and ``.dagster_home/`` live.
PROJECT_ROOT = Path(os.environ.get("HIMARI_PROJECT_ROOT", Path(__file__).resolve().parents[1]))


def lake_root() -> Path:
    """The lake directory (``HIMARI_LAKE_ROOT``, default ``<project>/data_lake``)."""
    return Path(os.environ.get("HIMARI_LAKE_ROOT", PROJECT_ROOT / "data_lake"))


def raw_dir() -> Path:
    """Where dropped files are picked up: ``<lake>/raw/<SYMBOL>/<TIMEFRAME>/*.{csv,zip,parquet}``."""
    return lake_root() / "raw"


def dagster_home() -> Path:
    """The persistent Dagster instance directory (``DAGSTER_HOME``, default ``<project>/.dagster_home``)."""
    return Path(os.environ.get("DAGSTER_HOME", PROJECT_ROOT / ".dagster_home"))


@dataclass(frozen=True)
class Profile:
    """What the main command materializes by default."""

    name: str
    timeframe: str
    datasets: tuple[str, ...]
    experiments: tuple[str, ...]


PROFILES: dict[str, Profile] = {
    "default": Profile("default", "1h", ("SYNTH-PLANTED_1h", "SYNTH-NULL_1h"), ("default",)),
    "full": Profile("full", "5m", ("SYNTH-PLANTED_5m", "SYNTH-NULL_5m"), ("log001_full",)),
}
