"""A real Celery cluster on one machine for tests: a Debian ``redis-server`` broker and worker processes.

The broker listens on 127.0.0.1 on a free port with persistence off; workers are started with the
``dagster-celery worker start`` command an operator uses, each in its own process group (stopped by
that group's id). Both always stop, whatever the test did.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REDIS_SERVER = os.environ.get("HIMARI_REDIS_SERVER", "/usr/bin/redis-server")
CELERY_APP = "dagster_celery.app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway Redis: loopback only, no RDB/AOF files, stopped (SIGTERM, then SIGKILL) on ``stop``."""

    def __init__(self, binary: str = REDIS_SERVER) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="himari-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout_s: float = 30) -> RedisServer:
        import redis

        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"]
        log = (self.dir / "redis.log").open("w")
        self.proc = subprocess.Popen([self.binary, *args], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log_tail = (self.dir / "redis.log").read_text()[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server did not start: {log_tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_worker(name: str, config_yaml: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``dagster-celery worker start -n NAME -y CONFIG -- --pool=solo``: one step at a time, in-process."""
    cmd = [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", CELERY_APP]
    cmd += ["-y", str(config_yaml), "-n", name, "--", "--pool=solo"]
    return subprocess.Popen(
        cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_worker(proc: subprocess.Popen) -> None:
    """Warm shutdown of the worker's process group (SIGTERM), SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_workers(broker: str, names: list[str], procs: list[subprocess.Popen], timeout_s: float) -> dict:
    """Block until every named worker answers on the broker; returns ``{hostname: worker pid}``."""
    from celery import Celery

    app = Celery(broker=broker)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            stats = app.control.inspect(timeout=1.0).stats() or {}
            pids = {host: s["pid"] for host, s in stats.items() if host.split("@")[0] in names}
            if len(pids) == len(names):
                return pids
            dead = [p.args for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"celery workers not ready (answered: {sorted(pids)}; exited: {dead})")
            time.sleep(0.5)
    finally:
        app.close()
