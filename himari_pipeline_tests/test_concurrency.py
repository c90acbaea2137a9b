"""Two datasets materialized in parallel under the multiprocess executor.

Two simultaneous Dagster runs (separate processes, each with the multiprocess executor) against one
DuckDB-file lake and one instance: no lock errors, and every stored version stays readable and
byte-identical to what was registered. (Two trainings at once, on two Celery workers against one
lake, are `test_scaleout.py`'s sweep.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from himari_pipeline.storage.hashing import frame_hash
from himari_pipeline.storage.lake import Lake

REPO = Path(__file__).resolve().parents[1]
RUNNER = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    if __name__ == "__main__":
        job_name, partition = sys.argv[1], sys.argv[2]
        instance = dg.DagsterInstance.get()
        repo = ReconstructableRepository.for_module(
            "himari_pipeline.definitions", "defs", working_directory=sys.argv[3]
        )
        res = dg.execute_job(
            repo.get_reconstructable_job(job_name), instance, tags={"dagster/partition": partition},
            run_config={"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}},
        )
        print("RESULT", partition, res.success, flush=True)
        sys.exit(0 if res.success else 1)
    """
)


def _parallel(tmp_path: Path, env: dict, job: str, partitions: list[str]) -> None:
    script = tmp_path / "run_job.py"
    script.write_text(RUNNER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), job, p, str(REPO)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for p in partitions
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-4000:]
        assert "Could not set lock" not in out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_datasets_in_parallel(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "HIMARI_LAKE_ROOT": str(tmp_path / "lake"),
        "HIMARI_SYNTHETIC_START": "2024-07-01",
        "HIMARI_TRUNCATION_PREFIXES": "2",
    }
    datasets = ["SYNTH-PLANTED_1h", "SYNTH-NULL_1h"]
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, dagster as dg\n"
            "dg.DagsterInstance.get().add_dynamic_partitions('datasets', sys.argv[1:])",
            *datasets,
        ],
        env=env,
        check=True,
    )
    _parallel(tmp_path, env, "data_job", datasets)

    lake = Lake(tmp_path / "lake")
    for v in lake.versions():
        if v.kind == "table":
            assert frame_hash(lake.read_table(v.asset, v.partition, v.version)) == v.version, v
        else:
            assert (lake.root / v.path).exists()
    assert set(lake.partitions("dataset_splits")) == set(datasets)
