"""Run a Dagster job in process for the CLI and print one status line per job."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import typer


def run_step(
    instance, job: str, key: str | None, label: str | None = None, quiet: bool = True, run_config=None
):
    """Run one job in process and print one status line (plus errors); returns the RunOutcome."""
    from himari_pipeline.runner import run_job

    label = label or key or job
    typer.echo(f"[{label}] {job} ...")
    if quiet and job == "marts_job":  # dbt writes its own log to the terminal: keep its summary line
        with terminal_captured() as captured:
            out = run_job(instance, job, key, run_config=run_config, quiet=quiet)
        lines = captured[0].splitlines()
        shown = [ln for ln in lines if ln.startswith("Done. PASS=")] if out.success else lines[-40:]
        for line in shown:
            typer.echo(f"    dbt: {line}")
    else:
        out = run_job(instance, job, key, run_config=run_config, quiet=quiet)
    typer.echo(f"[{label}] {job} {'ok' if out.success else 'FAILED'} (run {out.run_id})")
    for check in out.checks:
        if not check.passed and check.severity == "ERROR":
            typer.secho(f"[{label}]   check {check.name} did not pass: {check.description}", fg="red")
    if out.error:
        typer.secho(f"[{label}]   error: {out.error}", fg=typer.colors.RED)
    return out


@contextlib.contextmanager
def terminal_captured():
    """Send this process's stdout/stderr file descriptors (and children's) to a temp file meanwhile;
    yields a one-item list that holds the captured text afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved, text = [os.dup(1), os.dup(2)], [""]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text[0] = sink.read().decode(errors="replace")


def materialize_datasets(
    keys: list[str], quiet: bool = True, split_presets: dict[str, str] | None = None
) -> bool:
    """Register the datasets as partitions and run ``data_job`` for each; True when every run succeeded.

    ``split_presets`` maps a dataset key to the fractions preset its ``dataset_splits`` is cut with, the
    one its experiments want; a key without one gets the asset's default config.
    """
    from himari_pipeline.instance import get_instance
    from himari_pipeline.runner import ensure_partitions

    instance = get_instance()
    ensure_partitions(instance, keys)
    presets = split_presets or {}

    def config(key: str) -> dict | None:
        if key not in presets:
            return None
        return {"ops": {"dataset_splits": {"config": {"fractions": presets[key]}}}}

    return all(
        [run_step(instance, "data_job", key, quiet=quiet, run_config=config(key)).success for key in keys]
    )
