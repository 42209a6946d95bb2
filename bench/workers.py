"""Real stage worker processes for the benchmark, and how far their consumer groups have got."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, text

from runtime.services import Endpoints
from runtime.settings import Settings
from schemas.errors import OrderhubError

REPO = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
LOG_LEVEL_ENV = "ORDERHUB_BENCH_LOG_LEVEL"
"""The stage workers' log level (DEBUG logs each batch's prepare/transaction/send times)."""
PROFILE_ENV = "ORDERHUB_BENCH_PROFILE"
"""A directory: run every spawned stage worker under `py-spy record` (collapsed stacks there)."""


class BenchTimeout(OrderhubError):
    """A phase or the whole run took longer than allowed."""


class Deadline:
    """A point in monotonic time that a phase must finish by."""

    def __init__(self, seconds: float, what: str) -> None:
        self.at = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise BenchTimeout(self.message())

    def message(self) -> str:
        return f"{self.what} did not finish within {self.seconds:.0f}s"

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)


def _die_with_parent() -> None:
    # Same guarantee as the supervisor's workers: no stage outlives an interrupted benchmark.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    name: str, settings: Settings, endpoints: Endpoints, log_dir: Path
) -> subprocess.Popen[bytes]:
    """`orderhub stage NAME` as its own process, its output in log_dir/NAME.log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERHUB_")}
    env.update(settings.to_env())
    env.update(ORDERHUB_KAFKA__BOOTSTRAP=endpoints.bootstrap,
               ORDERHUB_DATABASE__URL=endpoints.database_url)
    level = os.environ.get(LOG_LEVEL_ENV, "INFO")
    cmd = [sys.executable, "-m", "runtime.cli", "--log-level", level, "stage", name,
           "--metrics-port", "0"]
    if profile := os.environ.get(PROFILE_ENV):  # py-spy samples the worker until it exits
        out_dir = Path(profile)
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
               "--rate", "200", "-o", str(out_dir / f"{name}-{time.time_ns()}.txt"), "--", *cmd]
    with (log_dir / f"{name}.log").open("ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if the worker has not left its group in time."""
    if proc.poll() is None:
        _terminate(proc)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker; under py-spy, the worker is its child, and py-spy writes its
    profile once that child has exited."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    pids = children.read_text().split() if os.environ.get(PROFILE_ENV) and children.exists() else []
    for pid in pids or [str(proc.pid)]:
        os.kill(int(pid), signal.SIGTERM)


def ensure_running(procs: dict[str, subprocess.Popen[bytes]], log_dir: Path) -> None:
    for name, proc in procs.items():
        if (rc := proc.poll()) is not None:
            raise OrderhubError(f"stage {name} exited with code {rc}; see {log_dir}/{name}.log")


def tracked(engine: Engine, group: str) -> int:
    """Inputs the group has processed, from the runner's tracking rows (one per batch)."""
    with engine.connect() as conn:
        done = conn.execute(
            text("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE group_id = :g"),
            {"g": group},
        ).scalar_one()
    return int(done)
