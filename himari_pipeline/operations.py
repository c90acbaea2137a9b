"""Operating the local deployment: run the UI (webserver + daemon) and recover from crashes.

* :func:`serve_ui` runs ``dagster dev`` (webserver *and* daemon) under a supervisor that stops every
  process it started, however deep, when it is stopped (SIGTERM, SIGINT/Ctrl-C, SIGHUP).
* :func:`find_stale_state` / :func:`repair` (``himari doctor``) find and fix what a killed process
  leaves behind: runs marked STARTING/STARTED/CANCELING whose processes are all gone (marked
  failed), pool slots and pending steps held by finished, dead or deleted runs (freed), and temp
  files in the lake that no process has open (removed). :func:`recover_stale_state` does both and is
  called by every ``himari`` command that runs jobs, and by ``himari ui`` on start and stop.

Liveness is judged from the process ids Dagster records with every event: a run is alive while any
process that logged its start or its steps still exists and was created before it logged. Process ids
only mean something on this machine, so runs are judged only when the instance's storage is a local
SQLite directory; on a shared (PostgreSQL) instance, Dagster's run monitoring is the authority.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from himari_pipeline.storage.atomic import is_temp_name

#: Run states in which a run claims to have a live process.
ACTIVE_STATES = ("STARTING", "STARTED", "CANCELING")
#: A temp file younger than this may still be in the hands of a writer that is about to rename it.
TEMP_MIN_AGE_S = 10.0
#: Seconds ``dagster dev`` gets to stop its webserver, daemon and code servers before they are killed.
UI_STOP_GRACE_S = 20.0
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class DeadRun:
    """A run whose status says it is running while every process it ran in is gone."""

    run_id: str
    job_name: str
    status: str
    partition: str | None
    pids: tuple[int, ...]

    def describe(self) -> str:
        where = f" [{self.partition}]" if self.partition else ""
        pids = ", ".join(map(str, self.pids)) or "none recorded"
        return (
            f"run {self.run_id} ({self.job_name}{where}) is {self.status} "
            f"but its processes are gone (pids {pids})"
        )


@dataclass(frozen=True)
class StaleSlot:
    """A pool slot (or a queued step) held by a run that will never release it."""

    pool: str
    run_id: str
    step_key: str
    run_status: str  # FAILURE / CANCELED / SUCCESS / dead / missing
    pending: bool = False

    def describe(self) -> str:
        what = "queued step" if self.pending else "slot"
        return (
            f"pool {self.pool}: {what} held by step {self.step_key} of run {self.run_id} ({self.run_status})"
        )


@dataclass
class Health:
    """What :func:`find_stale_state` found; ``clean`` when there is nothing to repair."""

    dead_runs: list[DeadRun] = field(default_factory=list)
    stale_slots: list[StaleSlot] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.dead_runs or self.stale_slots or self.temp_files)

    def problems(self) -> list[str]:
        return (
            [r.describe() for r in self.dead_runs]
            + [s.describe() for s in self.stale_slots]
            + [f"temp file left by a killed writer: {p}" for p in self.temp_files]
        )


# ----------------------------------------------------------------------------------------------
# liveness


def _started_before(pid: int, when: float) -> bool:
    """Whether process ``pid`` exists (not a zombie) and was created before ``when`` (epoch s)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= when + 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def local_pids_meaningful(instance) -> bool:
    """Process ids in the event log are this machine's: the instance stores runs in local SQLite."""
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    return isinstance(instance.run_storage, SqliteRunStorage)


def run_processes(instance, run_id: str) -> dict[int, float]:
    """Process id -> first time it logged an event of ``run_id`` (start, steps, launch)."""
    import dagster as dg

    kinds = {
        dg.DagsterEventType.RUN_STARTING,
        dg.DagsterEventType.RUN_START,
        dg.DagsterEventType.RUN_CANCELING,
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_WORKER_STARTING,
        dg.DagsterEventType.STEP_WORKER_STARTED,
    }
    pids: dict[int, float] = {}
    for rec in instance.all_logs(run_id, of_type=kinds):
        pid = rec.dagster_event.pid if rec.dagster_event else None
        if pid is not None:
            pids[pid] = min(pids.get(pid, rec.timestamp), rec.timestamp)
    return pids


# ----------------------------------------------------------------------------------------------
# finding and repairing stale state


def find_dead_runs(instance) -> list[DeadRun]:
    """Runs in STARTING/STARTED/CANCELING whose recorded processes are all gone."""
    import dagster as dg

    statuses = [dg.DagsterRunStatus[s] for s in ACTIVE_STATES]
    dead = []
    for rec in instance.get_run_records(filters=dg.RunsFilter(statuses=statuses)):
        run = rec.dagster_run
        procs = run_processes(instance, run.run_id)
        if any(_started_before(pid, ts) for pid, ts in procs.items()):
            continue
        dead.append(
            DeadRun(
                run.run_id,
                run.job_name,
                run.status.value,
                run.tags.get("dagster/partition"),
                tuple(sorted(procs)),
            )
        )
    return dead


def find_stale_slots(instance, dead_run_ids: Iterable[str] = ()) -> list[StaleSlot]:
    """Pool slots and pending steps whose run is finished, dead (``dead_run_ids``) or deleted."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    dead = set(dead_run_ids)
    infos = storage.get_concurrency_infos(sorted(storage.get_concurrency_keys()))
    held = [
        (pool, s.run_id, s.step_key, False) for pool, info in infos.items() for s in info.claimed_slots
    ] + [(pool, p.run_id, p.step_key, True) for pool, info in infos.items() for p in info.pending_steps]
    stale = []
    for pool, run_id, step_key, pending in held:
        run = instance.get_run_by_id(run_id)
        if run is None:
            status = "missing"
        elif run_id in dead:
            status = "dead"
        elif run.is_finished:
            status = run.status.value
        else:
            continue
        stale.append(StaleSlot(pool, run_id, step_key, status, pending))
    return stale


def _open_files() -> set[Path]:
    """Every file some visible process has open."""
    found: set[Path] = set()
    for proc in psutil.process_iter():
        try:
            found.update(Path(f.path) for f in proc.open_files())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def find_stale_temp_files(lake_root: Path) -> list[Path]:
    """Hidden ``*.tmp`` files in the lake that no process has open and nobody touched for a while."""
    root = Path(lake_root)
    if not root.is_dir():
        return []
    now = time.time()
    candidates = [
        p
        for p in root.rglob(".*")
        if p.is_file() and is_temp_name(p.name) and now - p.stat().st_mtime > TEMP_MIN_AGE_S
    ]
    if not candidates:
        return []
    in_use = _open_files()
    return sorted(p for p in candidates if p.resolve() not in in_use)


def find_stale_state(instance, lake_root: Path | None = None) -> Health:
    """Everything a killed process left behind in the Dagster instance and the lake."""
    health = Health()
    if local_pids_meaningful(instance):
        health.dead_runs = find_dead_runs(instance)
    else:
        health.notes.append(
            "runs not judged: the instance's storage is not local SQLite, so process ids may be "
            "another machine's (Dagster's run monitoring handles dead run workers there)"
        )
    health.stale_slots = find_stale_slots(instance, (r.run_id for r in health.dead_runs))
    if lake_root is not None:
        health.temp_files = find_stale_temp_files(lake_root)
    return health


def repair(instance, health: Health) -> list[str]:
    """Mark dead runs failed, free their slots and the stale ones, remove stale temp files."""
    done = []
    for run in health.dead_runs:
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.is_finished:
            continue
        instance.report_run_failed(
            current,
            f"Marked failed by himari: the run was {run.status} but its processes "
            f"({', '.join(map(str, run.pids)) or 'none recorded'}) are gone (killed or crashed).",
        )
        done.append(f"marked run {run.run_id} ({run.job_name}) failed: its processes are gone")
    for run_id in sorted({s.run_id for s in health.stale_slots}):
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        n = sum(1 for s in health.stale_slots if s.run_id == run_id)
        done.append(f"freed {n} pool slot(s)/queued step(s) of run {run_id}")
    for path in health.temp_files:
        path.unlink(missing_ok=True)
        done.append(f"removed temp file {path}")
    return done


def recover_stale_state(instance, lake_root: Path | None = None) -> list[str]:
    """Find and repair stale state; what was repaired (nothing when all is well)."""
    from himari_pipeline.config import lake_root as default_lake_root

    return repair(instance, find_stale_state(instance, lake_root or default_lake_root()))


# ----------------------------------------------------------------------------------------------
# the UI


def _libc_prctl(option: int, arg: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: best effort only
        pass


def _child_setup() -> None:
    """Runs in ``dagster dev`` between fork and exec: SIGINT stops it even if our caller ignored
    SIGINT (a shell's background job does), and it gets SIGINT when this process dies."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _libc_prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


def descendants() -> list[psutil.Process]:
    """Every live process below this one."""
    try:
        return psutil.Process().children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_processes(procs: list[psutil.Process], grace: float) -> None:
    """SIGTERM ``procs``, wait up to ``grace`` seconds, SIGKILL what is left and reap it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        alive = []
        for p in procs:
            try:
                p.send_signal(sig)
                alive.append(p)
            except psutil.NoSuchProcess:
                continue
        _, procs = psutil.wait_procs(alive, timeout=wait)
        if not procs:
            return


def serve_ui(host: str, port: int, workspace: Path, cwd: Path) -> int:
    """Run ``dagster dev`` (webserver + daemon) until it exits or this process is told to stop.

    This process becomes a child subreaper, so processes that ``dagster dev``'s children start and
    orphan (code servers, run workers) stay below it; on SIGTERM/SIGINT/SIGHUP ``dagster dev`` gets
    SIGINT (its clean shutdown), and whatever is still running ``UI_STOP_GRACE_S`` later is killed.
    If this process is killed outright, ``dagster dev`` receives SIGINT from the kernel.
    """
    _libc_prctl(_PR_SET_CHILD_SUBREAPER, 1)
    cmd = [sys.executable, "-m", "dagster", "dev", "-h", host, "-p", str(port), "-w", str(workspace)]
    proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, preexec_fn=_child_setup)
    stop_asked: list[float] = []  # monotonic times of the stop signals received

    def _on_signal(_signum, _frame):
        stop_asked.append(time.monotonic())
        if len(stop_asked) == 1 and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # dagster dev stops its webserver and daemon itself
        elif len(stop_asked) > 1:  # asked twice: no more patience
            stop_processes(descendants(), 0.5)

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while proc.poll() is None:
            if stop_asked and time.monotonic() - stop_asked[0] > UI_STOP_GRACE_S:
                break
            time.sleep(0.5)
        return 0 if stop_asked else proc.returncode
    finally:
        stop_processes(descendants(), 5.0)
        for s, handler in previous.items():
            signal.signal(s, handler)
