"""Start and stop ``himari ui`` (webserver + daemon) on a temporary instance, and talk GraphQL to it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
RUN_QUERY = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { runId status jobName tags { key value } } } }
"""
RUNS_QUERY = (
    "{ runsOrError { __typename ... on Runs { results { runId status jobName tags { key value } } } } }"
)
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(base_url: str, query: str, variables: dict | None = None, timeout: float = 10.0) -> dict:
    """POST one GraphQL query to the webserver and return its ``data`` (raise on errors)."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{base_url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        payload = json.load(resp)
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


@dataclass
class DagsterUI:
    """A running webserver (and daemon) with the paths it uses."""

    base_url: str
    home: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)
    stop_seconds: float | None = None  # how long ``himari ui`` took to stop
    leftovers: list[str] = field(default_factory=list)  # what outlived it (should stay empty)

    def run(self, run_id: str) -> dict:
        return graphql(self.base_url, RUN_QUERY, {"runId": run_id})["runOrError"]

    def runs(self) -> list[dict]:
        return graphql(self.base_url, RUNS_QUERY)["runsOrError"]["results"]

    def wait_run(self, run_id: str, timeout: float) -> dict:
        """Poll a run until it finishes (or ``timeout`` seconds pass) and return its last state."""
        deadline = time.monotonic() + timeout
        state = self.run(run_id)
        while state.get("status") not in FINISHED and time.monotonic() < deadline:
            self.check_alive()
            time.sleep(2)
            state = self.run(run_id)
        return state

    def check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[:4]} exited with {p.returncode}; logs in {self.log_dir}")

    def logs(self, tail: int = 4000) -> str:
        parts = []
        for f in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)


def himari_command() -> list[str]:
    """The ``himari`` console script of this environment (what the README tells users to run)."""
    script = Path(sys.executable).with_name("himari")
    return [str(script)] if script.exists() else [sys.executable, "-m", "himari_pipeline.cli"]


def start_ui(env: dict, log: Path, port: int, *extra: str) -> subprocess.Popen:
    """``himari ui --port PORT`` as the README says, in its own session, output to ``log``."""
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [*himari_command(), "ui", "--port", str(port), *extra],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(ui: DagsterUI, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        ui.check_alive()
        try:
            data = graphql(ui.base_url, WORKSPACE_QUERY, timeout=5)["workspaceOrError"]
            entries = data.get("locationEntries") or []
            last = json.dumps(entries)
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    raise RuntimeError(f"code location failed to load: {errors}")
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last = repr(exc)
        time.sleep(1)
    raise TimeoutError(f"webserver not ready after {timeout:.0f}s ({last}); logs in {ui.log_dir}")


def stop_ui(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 60.0) -> float:
    """Send ``sig`` to ``himari ui`` only (as ``kill`` or Ctrl-C would) and wait; seconds it took.

    If it does not exit within ``grace`` its whole session is killed and TimeoutError is raised.
    """
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _kill_session(proc)
        raise TimeoutError(f"himari ui did not stop within {grace:.0f}s of signal {sig}") from None
    return time.monotonic() - t0


def _kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


def port_is_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_with_env(name: str, value: str) -> list[int]:
    """Ids of this user's processes whose environment has ``name=value`` (ours, by construction)."""
    needle = f"{name}={value}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if d.stat().st_uid != os.getuid():
                continue
            if needle in (d / "environ").read_bytes().split(b"\0"):
                found.append(int(d.name))
        except OSError:
            continue
    return found


@contextmanager
def running_ui(home: Path, env: dict[str, str], log_dir: Path, *extra: str, timeout: float = 180.0):
    """Run ``himari ui`` (webserver + daemon) on a free port until exit, then stop it with SIGTERM.

    ``env`` must set ``DAGSTER_HOME`` to ``home``. Should anything that inherited this
    ``DAGSTER_HOME`` (code servers, run workers) outlive ``himari ui``, it is killed and reported.
    """
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    ui = DagsterUI(f"http://127.0.0.1:{port}", home, log_dir, dict(env), port=port)
    try:
        ui.procs.append(start_ui(env, log_dir / "himari_ui.log", port, *extra))
        _wait_ready(ui, timeout)
        yield ui
    finally:
        for p in ui.procs:
            try:
                ui.stop_seconds = stop_ui(p)
            except TimeoutError as exc:
                ui.leftovers.append(str(exc))
        for pid in processes_with_env("DAGSTER_HOME", str(home)):
            ui.leftovers.append(f"process {pid} outlived himari ui")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
