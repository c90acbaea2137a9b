"""Environment overrides for ``PipelineSettings`` defaults (e.g. a short synthetic span for the UI).

Dagster builds the resources when the code location loads, so runs launched from the UI use these
values unless the launchpad's run config sets ``resources.settings.config`` explicitly.

- ``HIMARI_SYNTHETIC_START`` / ``HIMARI_SYNTHETIC_END``: ISO dates bounding the synthetic market.
- ``HIMARI_TRUNCATION_PREFIXES``: how many prefixes the truncation-invariance checks try (>= 1).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping

ENV_SYNTHETIC_START = "HIMARI_SYNTHETIC_START"
ENV_SYNTHETIC_END = "HIMARI_SYNTHETIC_END"
ENV_TRUNCATION_PREFIXES = "HIMARI_TRUNCATION_PREFIXES"


def _iso_date(name: str, value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not an ISO date (YYYY-MM-DD)") from exc
    return value


def settings_overrides(environ: Mapping[str, str] | None = None) -> dict[str, str | int]:
    """Keyword arguments for ``PipelineSettings(...)`` taken from the environment (only those set)."""
    env = os.environ if environ is None else environ
    out: dict[str, str | int] = {}
    if env.get(ENV_SYNTHETIC_START):
        out["synthetic_start"] = _iso_date(ENV_SYNTHETIC_START, env[ENV_SYNTHETIC_START])
    if env.get(ENV_SYNTHETIC_END):
        out["synthetic_end"] = _iso_date(ENV_SYNTHETIC_END, env[ENV_SYNTHETIC_END])
    if "synthetic_start" in out and "synthetic_end" in out and out["synthetic_start"] >= out["synthetic_end"]:
        raise ValueError(f"{ENV_SYNTHETIC_START} must be before {ENV_SYNTHETIC_END}")
    if env.get(ENV_TRUNCATION_PREFIXES):
        raw = env[ENV_TRUNCATION_PREFIXES]
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{ENV_TRUNCATION_PREFIXES}={raw!r} must be a positive integer")
        out["truncation_prefixes"] = int(raw)
    return out
