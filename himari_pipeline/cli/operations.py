"""``himari ui`` and ``himari doctor``: serve the UI and daemon, find and repair stale state."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from himari_pipeline.cli.common import fail
from himari_pipeline.config import PROJECT_ROOT, lake_root


def ui(
    port: Annotated[int, typer.Option()] = 3000,
    host: Annotated[str, typer.Option(help="bind address; loopback unless you mean it")] = "127.0.0.1",
    workspace: Annotated[
        Path | None, typer.Option(help="a Dagster workspace.yaml (default: the project's)")
    ] = None,
) -> None:
    """Start the Dagster UI and daemon (schedules, sensor, run queue) on the project's instance.

    Stops everything it started on Ctrl-C or SIGTERM. Runs left behind by a crash are marked failed
    and their pool slots freed before it starts.
    """
    from himari_pipeline.instance import get_instance
    from himari_pipeline.operations import recover_stale_state, serve_ui

    with get_instance():  # recovers stale state on the way
        pass
    ws = (workspace or PROJECT_ROOT / "workspace.yaml").resolve()
    if not ws.is_file():
        fail(f"{ws}: no such workspace file")
    code = serve_ui(host, port, ws, PROJECT_ROOT)
    with get_instance(recover=False) as instance:  # runs the stop interrupted are failed now
        for line in recover_stale_state(instance):
            typer.echo(f"himari: {line}", err=True)
    raise typer.Exit(code)


def doctor(
    repair: Annotated[
        bool, typer.Option("--repair", help="fix what is found (default: report only)")
    ] = False,
) -> None:
    """Report stale state left by killed processes; --repair fixes it.

    Stale state: runs STARTING/STARTED/CANCELING whose processes are gone (repair: mark failed), pool
    slots or queued steps held by finished or dead runs (repair: free), temp files in the lake that no
    process has open (repair: delete). Exits 1 when something stale is left unrepaired.
    """
    from himari_pipeline.instance import get_instance
    from himari_pipeline.operations import find_stale_state
    from himari_pipeline.operations import repair as repair_state

    with get_instance(recover=False) as instance:
        health = find_stale_state(instance, lake_root())
        for note in health.notes:
            typer.echo(f"note: {note}")
        if health.clean:
            typer.secho(
                "clean: no dead runs, no stale pool slots, no stale temp files", fg=typer.colors.GREEN
            )
            return
        for problem in health.problems():
            typer.secho(f"stale: {problem}", fg=typer.colors.YELLOW)
        if not repair:
            fail("stale state found; `himari doctor --repair` fixes it")
        for line in repair_state(instance, health):
            typer.echo(f"repaired: {line}")
        left = find_stale_state(instance, lake_root())
        if not left.clean:
            fail("still stale after repair: " + "; ".join(left.problems()))
        typer.secho("clean after repair", fg=typer.colors.GREEN)
