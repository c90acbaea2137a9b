"""Faults for real: a writer killed with SIGKILL mid-write, a training run killed mid-way."""

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

from himari_pipeline.storage.hashing import frame_hash
from himari_pipeline.storage.lake import Lake

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
