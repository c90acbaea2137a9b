"""``himari ui`` as a real process tree: webserver and daemon, stopped completely, and the daemon at work.

* SIGTERM, then Ctrl-C (SIGINT), stop ``himari ui`` and every process below it; a second
  ``himari ui`` on the same port starts right after the first stopped.
* Against the daemon that ``himari ui`` started: a file dropped into the lake's raw folder is picked
  up by ``raw_files_sensor`` (partition added, ``data_job`` launched and dequeued), and a schedule
  tick launches a run (a test schedule with the logic of ``daily_append_schedule`` on a one-minute
  cron, see ``daemon_defs.py``). Runs the stop interrupts are marked failed: ``himari doctor`` is clean.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars
from himari_pipeline_tests.test_dagster_files import write_binance_csv
from himari_pipeline_tests.ui_helpers import (
    REPO,
    DagsterUI,
    _wait_ready,
    free_port,
    himari_command,
    port_is_open,
    processes_with_env,
    running_ui,
    start_ui,
    stop_ui,
)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "HIMARI_"))}
    return env | {
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "HIMARI_LAKE_ROOT": str(tmp / "lake"),
        "HIMARI_TRUNCATION_PREFIXES": "2",
    }


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


@pytest.mark.timeout(420)
def test_ui_stops_every_child_and_restarts_on_the_same_port(tmp_path):
    env = _env(tmp_path)
    port = free_port()
    for sig in (signal.SIGTERM, signal.SIGINT):  # `kill PID`, then Ctrl-C
        log = tmp_path / f"ui_{sig.name}.log"
        t0 = time.monotonic()
        proc = start_ui(env, log, port)
        ui = DagsterUI(f"http://127.0.0.1:{port}", tmp_path / "dagster_home", tmp_path, env, port, [proc])
        try:
            _wait_ready(ui, 180)
        except BaseException:
            stop_ui(proc)
            raise
        print(f"\nhimari ui ready in {time.monotonic() - t0:.1f}s on port {port}")
        tree = _tree(proc.pid)
        shown = _cmdlines(tree)
        assert "dagster_webserver" in shown and "dagster._daemon run" in shown, shown
        assert f"127.0.0.1 -p {port}" in shown, "not bound to loopback on the requested port"
        assert port_is_open(port)

        took = stop_ui(proc, sig)
        print(f"{sig.name}: himari ui stopped in {took:.1f}s (exit {proc.returncode}), {len(tree)} children")
        assert proc.returncode == 0, log.read_text()[-3000:]
        alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"outlived himari ui:\n{_cmdlines(alive)}"
        assert processes_with_env("DAGSTER_HOME", env["DAGSTER_HOME"]) == []
        assert not port_is_open(port), f"port {port} still taken after {sig.name}"


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


@pytest.mark.timeout(600)
def test_daemon_runs_the_sensor_and_a_schedule(tmp_path):
    from himari_pipeline_tests.daemon_defs import TEST_SCHEDULE

    env = _env(tmp_path)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: himari_pipeline_tests.daemon_defs\n"
        f"      working_directory: {REPO}\n"
    )
    key, folder = "DROP_1h", tmp_path / "lake" / "raw" / "DROP" / "1h"
    bars = generate_synthetic_bars(
        SyntheticConfig(seed=3, start="2024-12-01", end="2024-12-04", timeframe="1h")
    )
    t0 = time.monotonic()
    with running_ui(tmp_path / "dagster_home", env, tmp_path / "logs", "--workspace", str(workspace)) as ui:
        print(f"\nhimari ui ready in {time.monotonic() - t0:.1f}s")
        assert _dagster_runs(ui) == []  # nothing to do before the file arrives
        folder.mkdir(parents=True)
        write_binance_csv(bars, folder / "DROP-1h-2024-12.csv")
        dropped = time.monotonic()

        sensed = _wait_for(
            "a run requested by raw_files_sensor",
            ui,
            lambda r: r["tags"].get("dagster/sensor_name") == "raw_files_sensor",
            150,
        )
        print(f"sensor launched run {sensed['runId']} {time.monotonic() - dropped:.0f}s after the drop")
        assert sensed["jobName"] == "data_job" and sensed["tags"]["dagster/partition"] == key
        dequeued = _wait_for(
            "the sensor's run dequeued by the daemon",
            ui,
            lambda r: r["runId"] == sensed["runId"] and r["status"] not in ("QUEUED", "NOT_STARTED"),
            120,
        )
        print(f"... dequeued: {dequeued['status']}")

        ticked = _wait_for(
            f"a run requested by {TEST_SCHEDULE}",
            ui,
            lambda r: r["tags"].get("dagster/schedule_name") == TEST_SCHEDULE,
            150,
        )
        print(
            f"schedule tick launched run {ticked['runId']} {time.monotonic() - dropped:.0f}s after the drop"
        )
        assert ticked["jobName"] == "data_job" and ticked["tags"]["dagster/partition"] == key
    print(f"himari ui stopped in {ui.stop_seconds:.1f}s")
    assert not ui.leftovers, ui.leftovers

    # runs the stop interrupted were marked failed on the way out: nothing stale is left
    doctor = subprocess.run(
        [*himari_command(), "doctor"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "clean" in doctor.stdout
