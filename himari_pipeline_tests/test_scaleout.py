"""Scale-out is configuration: a PostgreSQL catalog shared by concurrent writers, a cluster executor.

Kept whole (over 400 lines): its tests share one PostgreSQL server (a module fixture) and its helpers.

A real PostgreSQL 15 server is started in a temporary directory (loopback and a unix socket only)
and always stopped; the DuckLake catalog and, where dagster-postgres is installed, the Dagster
instance storage live in it. The dagster.yaml used is the one printed in ``docs/operations.md``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from himari_pipeline.defs import jobs as jobs_module
from himari_pipeline.defs.data_assets import DATA_ASSETS, FEATURES_T, RAW
from himari_pipeline.defs.data_checks import DATA_CHECKS
from himari_pipeline.defs.executors import ExecutorConfigError, executor_from_env
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.storage.extensions import extension_file, extensions_for, load_extension
from himari_pipeline.storage.hashing import frame_hash
from himari_pipeline.storage.lake import Lake
from himari_pipeline_tests.celery_helpers import (
    REDIS_SERVER,
    RedisServer,
    start_worker,
    stop_worker,
    wait_for_workers,
)

PG_BIN = Path(os.environ.get("HIMARI_PG_BIN", "/usr/lib/postgresql/15/bin"))
DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
KEY = "SYNTH-PLANTED_1h"


class PostgresServer:
    """A throwaway PostgreSQL cluster: trust auth, 127.0.0.1 on a free port plus a unix socket."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="himari-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = self.dir / "data"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.prefix, *cmd], check=True, capture_output=True, timeout=60)

    def start(self) -> PostgresServer:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "himari", "--auth=trust", "--no-sync")
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            opts,
            "start",
        )
        return self

    def createdb(self, name: str) -> str:
        """Create database ``name``; returns its DuckLake catalog string."""
        self._run(str(PG_BIN / "createdb"), "-h", str(self.dir), "-p", str(self.port), "-U", "himari", name)
        return f"postgres:dbname={name} host=127.0.0.1 port={self.port} user=himari"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg():
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    if extension_file("postgres") is None:
        pytest.skip("duckdb-extension-postgres-scanner is not installed")
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _pg_catalog_rows(catalog: str, sql: str) -> list[tuple]:
    """Query the PostgreSQL catalog database directly (not through DuckLake)."""
    con = duckdb.connect()
    load_extension(con, "postgres")
    con.execute(f"ATTACH '{catalog.removeprefix('postgres:')}' AS pg (TYPE postgres, READ_ONLY)")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np, pandas as pd
    from himari_pipeline.storage.lake import Lake

    root, catalog, part, n, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    lake = Lake(root, catalog=catalog, lock_timeout_s=60)
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.01)
    spans = []
    for i in range(n):
        df = pd.DataFrame({
            "timestamp": pd.date_range("2024-01-01", periods=100 + i, freq="h", tz="UTC"),
            "x": np.arange(100 + i, dtype=float) * (len(part) + i),
        })
        t0 = time.time()
        v = lake.write_table("bars", part, df, run_id=f"{part}-{i}")
        spans.append([t0, time.time(), v.version])
    print(json.dumps(spans))
    """
)


def test_two_processes_write_partitions_concurrently_on_a_postgres_catalog(pg, tmp_path):
    catalog = pg.createdb("lake_concurrent")
    root, go, n = tmp_path / "lake", tmp_path / "go", 4
    # both writers start on an empty catalog: DuckLake initialises it once, the other retries
    procs = {
        part: subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), catalog, part, str(n), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for part in ("A_1h", "BB_1h")
    }
    time.sleep(0.5)
    go.touch()
    spans = {}
    for part, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        spans[part] = yaml.safe_load(out.strip().splitlines()[-1])
    # the writes really overlapped in time
    assert max(s[0][0] for s in spans.values()) < min(s[-1][1] for s in spans.values())

    lake = Lake(root, catalog=catalog)
    assert not (root / "catalog.ducklake").exists()  # the catalog is in PostgreSQL, not a local file
    for part, written in spans.items():
        hist = lake.versions("bars", part)
        assert [v.run_id for v in hist] == [f"{part}-{i}" for i in range(n)]
        assert [v.version for v in hist] == [s[2] for s in written]
        for i, v in enumerate(hist):  # every version stays readable by time travel, by hash prefix
            df = lake.read_table("bars", part, v.version[:12])
            assert len(df) == 100 + i and frame_hash(df) == v.version
            assert df["x"].iloc[-1] == (99 + i) * (len(part) + i)
    # roll back as docs/operations.md says: the old content becomes the latest, same content hash
    first = lake.get_version("bars", "A_1h", spans["A_1h"][0][2][:12])
    back = lake.write_table(
        "bars", "A_1h", lake.read_table("bars", "A_1h", first.version), inputs=first.inputs, run_id="rollback"
    )
    assert back.version == first.version and lake.latest("bars", "A_1h").run_id == "rollback"
    assert len(lake.versions("bars", "A_1h")) == n + 1
    snaps = [v.snapshot_id for v in lake.versions() if v.run_id != "rollback"]
    assert len(set(snaps)) == 2 * n
    # PostgreSQL itself holds the snapshots and the registry rows
    n_snap = _pg_catalog_rows(catalog, "SELECT count(*) FROM pg.public.ducklake_snapshot")[0][0]
    assert n_snap >= 2 * n + 1
    files = list((root / "files").rglob("*.parquet"))
    assert {f.parent.name for f in files if f.parent.name.startswith("partition_key=")} == {
        "partition_key=A_1h",
        "partition_key=BB_1h",
    }


def _doc_dagster_yaml() -> dict:
    """The PostgreSQL-backed dagster.yaml printed in docs/operations.md."""
    text = DOCS.read_text()
    blocks = re.findall(r"```yaml\n# dagster\.yaml.*?\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/operations.md lost its dagster.yaml block"
    return yaml.safe_load(blocks[0])


def _instance(pg, tmp_path: Path, monkeypatch) -> dg.DagsterInstance:
    """A Dagster instance on the doc's PostgreSQL storage when dagster-postgres is installed."""
    if not _has("dagster_postgres"):
        return dg.DagsterInstance.ephemeral()
    pg.createdb("dagster")
    for var, value in {
        "DAGSTER_PG_USERNAME": "himari",
        "DAGSTER_PG_PASSWORD": "unused-trust-auth",
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_DB": "dagster",
    }.items():
        monkeypatch.setenv(var, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    cfg = {"storage": _doc_dagster_yaml()["storage"], "telemetry": {"enabled": False}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(cfg))
    return dg.DagsterInstance.from_config(str(home))


def test_dagster_materializes_against_the_postgres_catalog(pg, tmp_path, monkeypatch):
    catalog = pg.createdb("lake_dagster")
    instance = _instance(pg, tmp_path, monkeypatch)
    try:
        instance.add_dynamic_partitions("datasets", [KEY])
        res = dg.materialize(
            [*DATA_ASSETS, *DATA_CHECKS],
            partition_key=KEY,
            instance=instance,
            resources={
                "lake": LakeResource(root=str(tmp_path / "lake"), catalog=catalog),
                "settings": PipelineSettings(
                    raw_dir=str(tmp_path / "raw"),
                    synthetic_start="2024-06-01",
                    synthetic_end="2024-09-30",
                    truncation_prefixes=2,
                ),
            },
            selection=[RAW, FEATURES_T],
            raise_on_error=False,
        )
        assert res.success
        checks = {e.check_name: e.passed for e in res.get_asset_check_evaluations()}
        assert checks and all(checks.values()), checks
        lake = Lake(tmp_path / "lake", catalog=catalog)
        raw, feats = lake.latest(RAW, KEY), lake.latest(FEATURES_T, KEY)
        assert feats.inputs == {RAW: raw.version} and raw.row_count == len(lake.read_table(RAW, KEY))
        assert len(lake.read_table(FEATURES_T, KEY)) == raw.row_count
        record = instance.get_latest_data_version_record(dg.AssetKey(FEATURES_T), partition_key=KEY)
        assert record is not None
        assert record.asset_materialization.tags["dagster/data_version"] == feats.short
        registry = _pg_catalog_rows(
            catalog, "SELECT DISTINCT table_name FROM pg.public.ducklake_table WHERE end_snapshot IS NULL"
        )
        assert {RAW, FEATURES_T, "himari_versions"} <= {r[0] for r in registry}
        if _has("dagster_postgres"):  # the run and its events are in PostgreSQL
            assert type(instance.event_log_storage).__module__.startswith("dagster_postgres")
            assert instance.get_run_records()[0].dagster_run.run_id == res.run_id
    finally:
        instance.dispose()


def test_object_store_data_path_needs_httpfs_and_postgres_catalog_needs_postgres():
    assert extensions_for("postgres:dbname=lake host=db", "s3://bucket/prefix/") == ["postgres", "httpfs"]
    assert extensions_for("/srv/lake/catalog.ducklake", "/srv/lake/files") == []
    if extension_file("httpfs") is not None:
        con = duckdb.connect()
        load_extension(con, "httpfs")  # offline, from the wheel
        con.execute("CREATE SECRET lake_s3 (TYPE s3, KEY_ID 'k', SECRET 's', REGION 'eu-west-1')")
        assert con.execute("SELECT name, type FROM duckdb_secrets()").fetchall() == [("lake_s3", "s3")]
        # the environment variables docs/operations.md gives reach DuckDB's S3 settings
        env = {
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_REGION": "eu-west-1",
            "DUCKDB_S3_ENDPOINT": "minio:9000",
        }
        code = (
            "import duckdb\n"
            "from himari_pipeline.storage.extensions import load_extension\n"
            "con = duckdb.connect()\n"
            "load_extension(con, 'httpfs')\n"
            "print(con.execute(\"SELECT current_setting('s3_access_key_id'), current_setting('s3_region'), "
            "current_setting('s3_endpoint')\").fetchone())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "('AKIAEXAMPLE', 'eu-west-1', 'minio:9000')"


def _definitions_with(env: dict[str, str]) -> dg.Definitions:
    choice = executor_from_env(env)
    job = dg.define_asset_job(
        "data_job",
        selection=dg.AssetSelection.assets(*DATA_ASSETS),
        executor_def=choice.executor_def,
        config=choice.run_config or None,
    )
    return dg.Definitions(
        assets=DATA_ASSETS,
        asset_checks=DATA_CHECKS,
        jobs=[job],
        resources={"lake": LakeResource(), "settings": PipelineSettings()},
    )


def test_definitions_load_with_a_cluster_executor_and_no_cluster():
    default = executor_from_env({})
    assert default.run_config == {"execution": {"config": {"in_process": {}}}}  # today's default
    loaded = 0
    for name, cfg in (("k8s", '{"job_namespace": "himari", "max_concurrent": 4}'), ("celery", "")):
        env = {"HIMARI_EXECUTOR": name, "HIMARI_EXECUTOR_CONFIG": cfg}
        try:
            defs = _definitions_with(env)
        except ExecutorConfigError as exc:  # the package is missing: the error names it
            assert f"dagster-{name}==" in str(exc)
            continue
        dg.Definitions.validate_loadable(defs)
        job = defs.resolve_job_def("data_job")
        assert job.executor_def.name == name
        loaded += 1
    if not loaded:
        pytest.skip(
            "neither dagster-k8s nor dagster-celery is installed (only the missing-package error was tested)"
        )
    with pytest.raises(ExecutorConfigError, match="expected one of"):
        executor_from_env({"HIMARI_EXECUTOR": "spark"})


def test_the_cluster_config_in_the_docs_is_valid_for_dagster_k8s():
    dagster_k8s = pytest.importorskip("dagster_k8s")
    from dagster._config import process_config

    doc_cfg = re.search(r"HIMARI_EXECUTOR_CONFIG='(.*?)'", DOCS.read_text(), flags=re.S).group(1)
    defs = _definitions_with({"HIMARI_EXECUTOR": "k8s", "HIMARI_EXECUTOR_CONFIG": doc_cfg})
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("data_job").executor_def.name == "k8s"
    # a typo in the executor config is caught when the definitions load, not on the cluster
    with pytest.raises(ExecutorConfigError, match="max_concurent"):
        _definitions_with({"HIMARI_EXECUTOR": "k8s", "HIMARI_EXECUTOR_CONFIG": "{max_concurent: 4}"})
    # the run launcher section of the doc's dagster.yaml matches K8sRunLauncher's schema
    launcher = _doc_dagster_yaml()["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(dagster_k8s.K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors


def test_project_definitions_follow_himari_executor():
    if "executor_from_env" not in inspect.getsource(jobs_module):
        pytest.skip("defs/jobs.py does not take its executor from executor_from_env() yet")
    code = (
        "import dagster as dg\n"
        "from himari_pipeline.definitions import defs\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "print(defs.resolve_job_def('data_job').executor_def.name)\n"
    )
    env = {**os.environ, "HIMARI_EXECUTOR": "k8s", "HIMARI_EXECUTOR_CONFIG": '{"job_namespace": "himari"}'}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "k8s"


def test_the_celery_config_reaches_every_run_and_a_typo_fails_at_load():
    pytest.importorskip("dagster_celery")
    cfg = {"broker": "redis://broker.internal:6379/0", "backend": "redis://broker.internal:6379/1"}
    defs = _definitions_with({"HIMARI_EXECUTOR": "celery", "HIMARI_EXECUTOR_CONFIG": json.dumps(cfg)})
    job = defs.resolve_job_def("data_job")  # partitioned: a job-level default config would not reach
    # a run made without run config (execute_job, `dagster job execute`) still gets the broker
    assert dg.validate_run_config(job, {})["execution"]["celery"] == {**cfg, "retries": {"enabled": {}}}
    # launch-time config is merged over the defaults key by key, and still checked against the schema
    launched = dg.validate_run_config(job, {"execution": {"config": {"backend": "rpc://"}}})
    assert launched["execution"]["celery"]["broker"] == cfg["broker"]
    assert launched["execution"]["celery"]["backend"] == "rpc://"
    with pytest.raises(dg.DagsterInvalidConfigError, match="brokr"):
        dg.validate_run_config(job, {"execution": {"config": {"brokr": "redis://elsewhere/0"}}})
    with pytest.raises(ExecutorConfigError, match="brokr"):  # a typo in the variable: at load time
        _definitions_with({"HIMARI_EXECUTOR": "celery", "HIMARI_EXECUTOR_CONFIG": "{brokr: redis://b/0}"})


SWEEP = ("smoke", "smoke_null")  # one tiny experiment on the planted and on the null market
WORKERS = ["worker-a", "worker-b"]


def _execute_all(job: str, tags: list[dict], env: dict, logs: Path) -> None:
    """``dagster job execute`` once per partition, all at the same time, as an operator would."""
    dagster = str(Path(sys.executable).parent / "dagster")
    procs = []
    for i, t in enumerate(tags):
        cmd = [dagster, "job", "execute", "-m", "himari_pipeline.definitions", "-j", job]
        log = logs / f"{job}-{i}.log"
        out = log.open("w")
        procs.append(
            (subprocess.Popen([*cmd, "--tags", json.dumps(t)], env=env, stdout=out, stderr=out), log)
        )
    for p, log in procs:
        p.wait(timeout=400)
        assert p.returncode == 0, log.read_text()[-4000:]


def _where_steps_ran(instance: dg.DagsterInstance, run_id: str) -> tuple[int | None, dict[str, dict]]:
    """The run process's pid and, per step: the Celery worker that took it and the pid it ran in."""
    run_pid, steps = None, {}
    for rec in instance.all_logs(run_id):
        ev = rec.dagster_event
        if ev is None:
            continue
        if ev.event_type_value == "PIPELINE_START":
            run_pid = ev.pid
        elif ev.step_key is None:
            continue
        elif ev.event_type_value == "ENGINE_EVENT" and "Celery worker" in ev.engine_event_data.metadata:
            steps.setdefault(ev.step_key, {})["worker"] = ev.engine_event_data.metadata["Celery worker"].value
        elif ev.event_type_value == "STEP_START":
            steps.setdefault(ev.step_key, {})["pid"] = ev.pid
    return run_pid, steps


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_sweep_runs_on_two_celery_workers_with_a_real_broker(pg, tmp_path, monkeypatch):
    """smoke + smoke_null on dagster-celery: a Redis broker, two workers, Dagster and the lake on PostgreSQL.

    Chosen by configuration only (``HIMARI_EXECUTOR=celery``); the runs are started with
    ``dagster job execute`` as an operator would, and their steps must run in the worker processes.
    """
    if not Path(REDIS_SERVER).exists():
        pytest.skip(
            f"{REDIS_SERVER} not found (apt-get install redis-server; `make test` installs it as root)"
        )
    missing = [m for m in ("dagster_celery", "redis", "dagster_postgres") if not _has(m)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[cluster]')")
    from himari_pipeline.definitions import defs
    from himari_pipeline.defs.data_assets import SPLITS
    from himari_pipeline.defs.partitions import lake_partition, training_key
    from himari_pipeline.rl.experiments import load_experiment

    catalog = pg.createdb("sweep_lake")
    pg.createdb("sweep_dagster")
    pg_env = {
        "DAGSTER_PG_USERNAME": "himari",
        "DAGSTER_PG_PASSWORD": "unused-trust-auth",
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_DB": "sweep_dagster",
    }
    for var, value in pg_env.items():
        monkeypatch.setenv(var, value)
    home, lake_root = tmp_path / "dagster_home", tmp_path / "lake"  # the lake root: the shared volume
    home.mkdir()
    doc = _doc_dagster_yaml()  # the cluster dagster.yaml of docs/operations.md: storage and pools
    cfg = {"storage": doc["storage"], "concurrency": doc["concurrency"], "telemetry": {"enabled": False}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(cfg))

    broker = RedisServer().start()
    workers: list[subprocess.Popen] = []
    try:
        executor_cfg = {"broker": broker.url(0), "backend": broker.url(1)}
        (tmp_path / "celery.yaml").write_text(yaml.safe_dump({"execution": {"config": executor_cfg}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HIMARI_LAKE_", "HIMARI_EXECUTOR"))}
        env.update(pg_env)
        env.update(
            {
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "DAGSTER_HOME": str(home),
                "HIMARI_LAKE_ROOT": str(lake_root),
                "HIMARI_LAKE_CATALOG": catalog,
                "HIMARI_TEST_EXPERIMENTS": "1",
                "HIMARI_EXECUTOR": "celery",
                "HIMARI_EXECUTOR_CONFIG": json.dumps(executor_cfg),
            }
        )
        for name in WORKERS:  # they boot while the splits are made
            workers.append(start_worker(name, tmp_path / "celery.yaml", env, tmp_path / f"{name}.log"))

        instance = dg.DagsterInstance.from_config(str(home))
        try:
            datasets = {name: load_experiment(name).dataset for name in SWEEP}
            instance.add_dynamic_partitions("datasets", sorted(set(datasets.values())))
            local_runs = []
            for dataset in sorted(set(datasets.values())):  # the sweep's inputs, made here in process
                made = dg.materialize(
                    [*DATA_ASSETS, *DATA_CHECKS],
                    partition_key=dataset,
                    instance=instance,
                    resources={
                        "lake": LakeResource(root=str(lake_root), catalog=catalog),
                        "settings": PipelineSettings(synthetic_start="2025-09-15", truncation_prefixes=1),
                    },
                )
                assert made.success
                local_runs.append(made.run_id)
            worker_pids = wait_for_workers(broker.url(0), WORKERS, workers, timeout_s=180)

            train_job = defs.resolve_job_def("train_job")
            tags = [
                train_job.partitions_def.get_tags_for_partition_key(training_key(n, datasets[n]))
                for n in SWEEP
            ]
            _execute_all("train_job", tags, env, tmp_path)

            runs = [
                r.dagster_run for r in instance.get_run_records() if r.dagster_run.job_name == "train_job"
            ]
            assert len(runs) == len(SWEEP)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
            where = {r.run_id: _where_steps_ran(instance, r.run_id) for r in runs}
            where_local = [_where_steps_ran(instance, run_id) for run_id in local_runs]
        finally:
            instance.dispose()
    finally:
        for w in workers:
            stop_worker(w)
        broker.stop()

    # the evidence tells the engines apart: the splits' steps ran in this process, on no worker
    for run_pid, steps in where_local:
        assert run_pid == os.getpid() and steps
        assert all("worker" not in step and step["pid"] == run_pid for step in steps.values())
    # every step of the sweep ran in one of the two worker processes, never in the run's own process
    for run_id, (run_pid, steps) in where.items():
        assert run_pid is not None and run_pid not in worker_pids.values()
        assert "policy_checkpoints" in steps
        for key, step in steps.items():
            assert step["pid"] == worker_pids[step["worker"]], (run_id, key, step, worker_pids)
    # the two trainings of the sweep ran at the same time, one on each worker
    assert {where[r.run_id][1]["policy_checkpoints"]["worker"] for r in runs} == set(worker_pids)

    # the checkpoints are in the lake (catalog in PostgreSQL), registered by the runs that trained them
    lake = Lake(lake_root, catalog=catalog)
    for run in runs:
        name = run.tags["dagster/partition/experiment"]
        part = lake_partition(name, datasets[name])
        v = lake.latest("checkpoints", part)
        assert v.run_id == run.run_id and v.inputs[SPLITS] == lake.latest(SPLITS, datasets[name]).version
        table = lake.read_table("checkpoints", part)
        assert len(table) >= 2 and all((lake.root / p).is_dir() for p in table["checkpoint_path"])
