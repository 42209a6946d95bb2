"""Runs every stage as its own process (for `up` and `drain`) and watches them."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from notify.projection import outstanding
from runtime.db import in_transaction, make_engine
from runtime.kafka import PartitionLag, group_lag
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES, group_id
from schemas.base import SHANGHAI

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the supervisor dies, so no worker outlives it."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class StageProcesses:
    """One `orderhub stage NAME` child process per stage, all pointed at the same endpoints."""

    def __init__(self, settings: Settings, endpoints: Endpoints, metrics_base_port: int,
                 names: tuple[str, ...] = tuple(STAGES)) -> None:
        """`metrics_base_port`: process i of `names` serves metrics on base + i; 0 disables.

        `names` are stages and, inside `up`, the ingest services (ingest-http, ingest-poll).
        """
        self.settings = settings
        self.names = names
        self.endpoints = endpoints
        self.metrics_base_port = metrics_base_port
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for name in self.names:
            self._spawn(name)

    def restart(self, name: str) -> None:
        """Start a stage again after its process exited (it resumes from its last commit)."""
        time.sleep(1.0)  # a crash loop must not spin
        self._spawn(name)

    def _spawn(self, name: str) -> None:
        env = {**os.environ, **self.settings.to_env(),
               "ORDERHUB_KAFKA__BOOTSTRAP": self.endpoints.bootstrap,
               "ORDERHUB_DATABASE__URL": self.endpoints.database_url}
        i = self.names.index(name)
        port = self.metrics_base_port + i if self.metrics_base_port else 0
        cmd = [sys.executable, "-m", "runtime.cli", "stage", name, "--metrics-port", str(port)]
        self.procs[name] = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)

    def failed(self) -> dict[str, int]:
        """Stages whose process has exited, with exit codes."""
        return {n: rc for n, p in self.procs.items() if (rc := p.poll()) is not None}

    def stop(self, timeout: float = 30.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, p in self.procs.items():
            try:
                p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", name, timeout)
                p.kill()
                p.wait()


def pipeline_lag(settings: Settings, endpoints: Endpoints) -> list[PartitionLag]:
    """Lag of every stage's consumer group on its inputs, in pipeline order."""
    prefix = settings.kafka.topic_prefix
    groups = {
        group_id(settings, name): [s.full_name(prefix) for s in entry.sources]
        for name, entry in STAGES.items()
    }
    return group_lag(endpoints.bootstrap, groups, settings.kafka.partitions)


def wait_until_drained(
    settings: Settings, endpoints: Endpoints, procs: StageProcesses, timeout: float,
    report: Callable[[str], None],
) -> bool:
    """Poll until every stage's group has no lag and no notification due now is unsent, twice
    in a row; False on timeout or failure. (Sends deferred by quiet hours are not waited for.)"""
    deadline = time.monotonic() + timeout
    engine = make_engine(endpoints.database_url)
    try:
        return _wait(settings, endpoints, procs, engine, deadline, report)
    finally:
        engine.dispose()


def _wait(settings: Settings, endpoints: Endpoints, procs: StageProcesses, engine: Engine,
          deadline: float, report: Callable[[str], None]) -> bool:
    quiet = 0
    last = -1
    timeout = deadline - time.monotonic()
    while time.monotonic() < deadline:
        failed = procs.failed()
        if failed:
            report(f"stage process(es) exited early: {failed}")
            return False
        total = sum(p.lag for p in pipeline_lag(settings, endpoints)) + in_transaction(
            engine, lambda c: outstanding(c, datetime.now(SHANGHAI)))
        quiet = quiet + 1 if total == 0 else 0
        if quiet >= 2:
            return True
        if total != last:
            report(f"waiting: {total} message(s) not yet processed")
            last = total
        time.sleep(0.5)
    report(f"timed out after {timeout:.0f}s with {last} message(s) left")
    return False
