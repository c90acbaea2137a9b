"""``himari ui`` as a real process tree: the daemon at work, a killed run worker, a complete stop.

One ``himari ui`` (webserver + daemon, as the README starts it) on a temporary instance and lake:

* a file dropped into the lake's raw folder is picked up by ``raw_files_sensor``: the partition is
  added and ``data_job`` launched; the daemon dequeues it; its run worker is then killed with SIGKILL
  while it holds the lake pool slot: the run is marked failed and the slot freed;
* a schedule tick launches a run (a test schedule with the logic of ``daily_append_schedule`` on a
  one-minute cron, see ``daemon_defs.py``), and that run succeeds: the killed run blocks nothing;
* SIGTERM stops ``himari ui`` and every process below it, the port is free, ``himari doctor`` is
  clean; a second ``himari ui`` on the same port starts right away and Ctrl-C (SIGINT) stops it too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from himari_pipeline_tests.builders import himari_env, synthetic_bars, write_binance_csv
from himari_pipeline_tests.ui_helpers import (
    REPO,
    DagsterUI,
    _wait_ready,
    himari_command,
    port_is_open,
    processes_with_env,
    running_ui,
    start_ui,
    stop_ui,
)


def _env(tmp: Path) -> dict[str, str]:
    # the row-by-row check on the newest 200 rows only
    return himari_env(tmp, truncation_prefixes="2", truncation_rows="200")


def _tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _cmdlines(procs: list[psutil.Process]) -> str:
    out = []
    for p in procs:
        try:
            out.append(" ".join(p.cmdline()))
        except psutil.Error:
            continue
    return "\n".join(out)


def _dagster_runs(ui: DagsterUI) -> list[dict]:
    runs = ui.runs()
    for r in runs:
        r["tags"] = {t["key"]: t["value"] for t in r["tags"]}
    return runs


def _wait_for(what: str, ui: DagsterUI, pick, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ui.check_alive()
        found = [r for r in _dagster_runs(ui) if pick(r)]
        if found:
            return found[0]
        time.sleep(2)
    raise AssertionError(f"{what}: none after {timeout:.0f}s; runs {_dagster_runs(ui)}\n{ui.logs()}")


def _kill_run_worker(ui: DagsterUI, run_id: str, timeout: float) -> tuple[list[int], str]:
    """SIGKILL the processes of ``run_id`` (below ``himari ui``) once one of its steps holds a slot."""
    import dagster as dg

    from himari_pipeline.defs.data_assets import POOL
    from himari_pipeline.operations import run_processes

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ours = {p.pid for p in _tree(ui.procs[0].pid)}
        with dg.DagsterInstance.from_config(str(ui.home)) as instance:
            held = [
                s.step_key
                for s in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
                if s.run_id == run_id
            ]
            pids = [pid for pid in run_processes(instance, run_id) if pid in ours]
        if held and pids:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            return pids, held[0]
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} never held a {POOL} slot in a process of ours\n{ui.logs()}")


def _stopped_cleanly(proc, tree: list[psutil.Process], env: dict, port: int) -> None:
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"outlived himari ui:\n{_cmdlines(alive)}"
    assert processes_with_env("DAGSTER_HOME", env["DAGSTER_HOME"]) == []
    assert not port_is_open(port), f"port {port} still taken"


@pytest.mark.timeout(900)
def test_daemon_sensor_schedule_killed_worker_and_restart(tmp_path):
    from himari_pipeline_tests.daemon_defs import TEST_SCHEDULE

    env = _env(tmp_path)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: himari_pipeline_tests.daemon_defs\n"
        f"      working_directory: {REPO}\n"
    )
    key, folder = "DROP_1h", tmp_path / "lake" / "raw" / "DROP" / "1h"
    bars = synthetic_bars("2024-01-01", "2025-12-31")
    folder.mkdir(parents=True)  # dropped before the start: the sensor's first tick finds it (no 60 s wait)
    write_binance_csv(bars, folder / "DROP-1h-2024-2025.csv")
    dropped = t0 = time.monotonic()
    with running_ui(tmp_path / "dagster_home", env, tmp_path / "logs", "--workspace", str(workspace)) as ui:
        print(f"\nhimari ui ready in {time.monotonic() - t0:.1f}s")
        tree = _tree(ui.procs[0].pid)
        shown = _cmdlines(tree)
        assert "dagster_webserver" in shown and "dagster._daemon run" in shown, shown
        assert f"127.0.0.1 -p {ui.port}" in shown, "not bound to loopback on the requested port"

        sensed = _wait_for(
            "a run requested by raw_files_sensor",
            ui,
            lambda r: r["tags"].get("dagster/sensor_name") == "raw_files_sensor",
            150,
        )
        print(f"sensor launched run {sensed['runId']} {time.monotonic() - dropped:.0f}s after the drop")
        assert sensed["jobName"] == "data_job" and sensed["tags"]["dagster/partition"] == key

        pids, step = _kill_run_worker(ui, sensed["runId"], 180)  # dequeued, started, writing
        print(f"killed run worker {pids} of {sensed['runId']} while {step} held the slot")
        killed = ui.wait_run(sensed["runId"], 60)
        assert killed["status"] == "FAILURE", killed

        ticked = _wait_for(
            f"a run requested by {TEST_SCHEDULE}",
            ui,
            lambda r: r["tags"].get("dagster/schedule_name") == TEST_SCHEDULE,
            150,
        )
        assert ticked["jobName"] == "data_job" and ticked["tags"]["dagster/partition"] == key
        done = ui.wait_run(ticked["runId"], 300)
        print(f"schedule's run {ticked['runId']}: {done['status']} at +{time.monotonic() - dropped:.0f}s")
        assert done["status"] == "SUCCESS", f"{done}\n{ui.logs()}"
        tree = _tree(ui.procs[0].pid)
    print(f"SIGTERM: himari ui stopped in {ui.stop_seconds:.1f}s")
    assert not ui.leftovers, ui.leftovers
    _stopped_cleanly(ui.procs[0], tree, env, ui.port)
    doctor = subprocess.run(
        [*himari_command(), "doctor"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 0 and "clean" in doctor.stdout, doctor.stdout + doctor.stderr

    # the same port again, right away; then Ctrl-C
    t0 = time.monotonic()
    proc = start_ui(env, tmp_path / "logs" / "second_ui.log", ui.port)
    again = DagsterUI(ui.base_url, ui.home, tmp_path / "logs", env, ui.port, [proc])
    try:
        _wait_ready(again, 180)
    except BaseException:
        stop_ui(proc)
        raise
    print(f"second himari ui ready on port {ui.port} in {time.monotonic() - t0:.1f}s")
    tree = _tree(proc.pid)
    took = stop_ui(proc, signal.SIGINT)
    print(f"SIGINT: himari ui stopped in {took:.1f}s")
    assert proc.returncode == 0
    _stopped_cleanly(proc, tree, env, ui.port)
