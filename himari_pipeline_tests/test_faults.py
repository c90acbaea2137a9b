"""Faults for real: a writer killed with SIGKILL mid-write, a training run killed mid-way, a data run
killed while it holds the lake pool slot (and the next run, which must not be blocked)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.storage.hashing import frame_hash
from himari_pipeline.storage.lake import Lake
from himari_pipeline_tests.builders import himari_env

WRITER = textwrap.dedent(
    """
    import sys, numpy as np, pandas as pd
    from himari_pipeline.storage.lake import Lake
    lake = Lake(sys.argv[1])
    n = 400_000
    ts = pd.date_range("2020-01-01", periods=n, freq="5min", tz="UTC")
    i = 0
    while True:
        i += 1
        df = pd.DataFrame({"timestamp": ts, **{f"f{j}": np.full(n, float(i + j)) for j in range(12)}})
        print("writing", i, flush=True)
        lake.write_table("features", "A_5m", df)
        print("wrote", i, flush=True)
    """
)


def _frame(value: float) -> pd.DataFrame:
    n = 400_000
    ts = pd.date_range("2020-01-01", periods=n, freq="5min", tz="UTC")
    return pd.DataFrame({"timestamp": ts, **{f"f{j}": np.full(n, float(value + j)) for j in range(12)}})


def test_sigkill_mid_write_leaves_previous_version_intact(tmp_path):
    root = tmp_path / "lake"
    lake = Lake(root)
    base = lake.write_table("features", "A_5m", _frame(0.0))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        # wait until the writer is inside its second write (the first may have committed)
        seen = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("writing"):
                seen += 1
                if seen == 2:
                    break
        assert seen == 2, "writer never started"
        time.sleep(0.3)  # inside the write: Parquet files being written / transaction open
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    versions = lake.versions("features", "A_5m")
    assert versions[0].version == base.version
    for v in versions:  # every visible version is complete and byte-identical to what was registered
        assert frame_hash(lake.read_table("features", "A_5m", v.version)) == v.version
    latest = lake.read_table("features", "A_5m")
    assert frame_hash(latest) == versions[-1].version
    after = lake.write_table("features", "A_5m", _frame(99.0))  # the next run succeeds
    assert lake.latest("features", "A_5m") == after


TRAINER = textwrap.dedent(
    """
    import sys
    from himari_pipeline.datasets.arrays import load_npz
    from himari_pipeline.rl.experiments import load_experiment
    from himari_pipeline.rl.training import train_experiment
    exp = load_experiment("smoke")
    splits = load_npz(sys.argv[1])
    s = train_experiment(exp, splits, sys.argv[2], progress=False, split_version="v1")
    print("RESUMED_FROM", s.resumed_from_step, "STEP", s.global_step, flush=True)
    """
)


def test_training_killed_midway_resumes_from_last_checkpoint(tmp_path):
    from himari_pipeline.datasets.arrays import export_npz
    from himari_pipeline.rl.training import build_synthetic_splits

    splits = build_synthetic_splits(variant="planted", start="2023-01-01", end="2024-12-31")
    npz = export_npz(splits, tmp_path / "splits.npz")
    out = tmp_path / "run"
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(npz), str(out)], env=env)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(out.glob("step_*/checkpoint.json")):
            time.sleep(0.05)
        assert any(out.glob("step_*/checkpoint.json")), "no checkpoint written"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    steps = sorted(int(json.loads(p.read_text())["step"]) for p in out.glob("step_*/checkpoint.json"))
    assert not list(out.glob(".step_*")) or all(p.name.startswith(".") for p in out.glob(".step_*"))
    done = subprocess.run(
        [sys.executable, "-c", TRAINER, str(npz), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESUMED_FROM"))
    _, resumed, _, final = line.split()
    assert steps[-1] < int(final), "the run finished before it was killed"
    assert resumed != "None" and int(resumed) >= steps[-1]  # continued from the last checkpoint
    assert Path(out / "best.json").exists()


def _himari(*args: str, env: dict, **kw) -> subprocess.CompletedProcess:
    from himari_pipeline_tests.ui_helpers import REPO, himari_command

    return subprocess.run([*himari_command(), *args], env=env, cwd=REPO, capture_output=True, text=True, **kw)


def _claimed_slots(home: Path) -> list[tuple[str, str]]:
    """(run id, step) of every claimed slot of the lake writers' pool in the instance at ``home``."""
    import dagster as dg

    from himari_pipeline.defs.data_assets import POOL

    with dg.DagsterInstance.from_config(str(home)) as instance:
        info = instance.event_log_storage.get_concurrency_info(POOL)
        return [(s.run_id, s.step_key) for s in info.claimed_slots]


WRITERS_AFTER_RAW = {"features", "regimes", "features_denoised", "dataset_splits"}


@pytest.mark.timeout(420)
def test_data_run_killed_mid_write_does_not_block_the_next_run(tmp_path):
    """SIGKILL a real `himari run` while it holds the lake pool slot: doctor sees the dead run and the
    slot, the next run of the same job frees them, completes, and doctor is clean afterwards."""
    import dagster as dg

    from himari_pipeline_tests.ui_helpers import himari_command

    home = tmp_path / "dagster_home"
    env = himari_env(
        tmp_path,
        synthetic_start="2024-01-01",
        synthetic_end="2025-12-31",
        truncation_prefixes="2",
        truncation_rows="200",
    )
    cmd = ["run", "-d", "SYNTH-PLANTED_1h", "--data-only"]
    log = tmp_path / "first_run.log"
    with log.open("w") as out:
        first = subprocess.Popen([*himari_command(), *cmd], env=env, stdout=out, stderr=subprocess.STDOUT)
    held: list[tuple[str, str]] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            # read the instance only once the run has written raw_ohlcv: opening it while the CLI is
            # still creating its storage would race the schema migration
            held = _claimed_slots(home) if "raw_ohlcv: done" in log.read_text() else []
            if any(step in WRITERS_AFTER_RAW for _, step in held):  # raw_ohlcv written, the next writing
                break
            time.sleep(0.2)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    assert any(step in WRITERS_AFTER_RAW for _, step in held), f"never saw a writer after raw_ohlcv: {held}"
    (killed_run, step), *_ = held

    # the bad state, reported (and left alone) by `himari doctor`
    report = _himari("doctor", env=env, timeout=120)
    assert report.returncode == 1, report.stdout + report.stderr
    assert (
        f"run {killed_run} (data_job [SYNTH-PLANTED_1h]) is STARTED but its processes are gone"
        in report.stdout
    )
    assert f"pool himari_lake: slot held by step {step} of run {killed_run} (dead)" in report.stdout
    assert _claimed_slots(home) == held  # report only

    # the next run of the same job recovers on start and completes
    t0 = time.monotonic()
    again = _himari(*cmd, env=env, timeout=600)
    took = time.monotonic() - t0
    print(f"\nrerun after the kill: exit {again.returncode} in {took:.0f}s")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"marked run {killed_run} (data_job) failed" in again.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="data_job"))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
    assert _claimed_slots(home) == []

    clean = _himari("doctor", env=env, timeout=120)
    assert clean.returncode == 0 and "clean" in clean.stdout, clean.stdout + clean.stderr


def test_process_liveness_ignores_a_reused_pid():
    import psutil

    from himari_pipeline.operations import _started_before

    me = psutil.Process()
    assert _started_before(me.pid, time.time())  # alive, and started before "now"
    assert not _started_before(me.pid, me.create_time() - 60)  # the pid logged before this process existed
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert not _started_before(gone.pid, time.time())


@pytest.mark.timeout(180)
def test_doctor_reports_then_repairs_a_stale_temp_file_but_not_one_in_use(tmp_path):
    env = himari_env(tmp_path)
    folder = tmp_path / "lake" / "artifacts" / "dataset_splits" / "A_1h"
    folder.mkdir(parents=True)
    stale, busy = folder / ".splits.npz.0123abcd.tmp", folder / ".other.npz.4567ef89.tmp"
    for p in (stale, busy):
        p.write_bytes(b"half a file")
        os.utime(p, (time.time() - 60, time.time() - 60))
    holder = subprocess.Popen(  # a writer still busy with its temp file
        [
            sys.executable,
            "-c",
            f"import time; f = open({str(busy)!r}, 'ab'); print('open', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        report = _himari("doctor", env=env, timeout=120)
        assert report.returncode == 1, report.stdout + report.stderr
        assert f"temp file left by a killed writer: {stale}" in report.stdout
        assert str(busy) not in report.stdout and stale.exists()

        fixed = _himari("doctor", "--repair", env=env, timeout=120)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert f"repaired: removed temp file {stale}" in fixed.stdout and "clean after repair" in fixed.stdout
        assert not stale.exists() and busy.exists()
    finally:
        holder.kill()
        holder.wait(10)
