"""A quiet Dagster logger for the CLI: one short line per message, step and check; no DEBUG, no JSON.

``himari run`` configures it (and leaves Dagster's console logger off) unless ``-v`` asks for
Dagster's own logs; runs started from the UI, schedules or sensors do not use it.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg


def progress_line(record: logging.LogRecord) -> str | None:
    """The line shown for one Dagster log record, or None to stay quiet about it."""
    meta = getattr(record, "dagster_meta", None) or {}
    event = meta.get("dagster_event")
    if event is None:
        if record.levelno < logging.INFO:
            return None
        return _clip(str(meta.get("orig_message", record.getMessage())), 300)
    kind, step, data = event.event_type_value, event.step_key, event.event_specific_data
    if kind == "STEP_SUCCESS":
        return f"{step}: done in {data.duration_ms / 1000:.1f} s"
    if kind == "STEP_FAILURE":
        return f"{step}: FAILED"
    if kind == "ASSET_CHECK_EVALUATION":
        outcome = "passed" if data.passed else f"did not pass ({data.severity.value})"
        desc = f": {data.description}" if data.description and not data.passed else ""
        return f"check {data.check_name} {outcome}{_clip(desc)}"
    return None


def _clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class ProgressHandler(logging.Handler):
    """Prints :func:`progress_line` of each record, indented, to the current ``sys.stdout``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = progress_line(record)
        except Exception:  # a display helper must never break a run
            return
        if line:
            print(f"    {line}", file=sys.stdout, flush=True)


@dg.logger(description="One short line per step, check and asset message (the `himari` CLI).")
def cli_progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("himari_cli", level=logging.DEBUG)  # step events are DEBUG records
    logger.addHandler(ProgressHandler())
    return logger


LOGGERS = {"console": dg.colored_console_logger, "himari_cli": cli_progress_logger}
QUIET_RUN_CONFIG = {"loggers": {"himari_cli": {}}}
