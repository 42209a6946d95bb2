"""CPU seconds of the benchmark's processes from /proc, to read a rate against the cores it got."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    """One process as /proc/PID/stat shows it."""

    pid: int
    comm: str
    ppid: int
    cpu_s: float
    """utime + stime, its threads included (not its children)."""
    started_tick: int


def read_proc(pid: int) -> Proc | None:
    """None if the process is gone (or went while being read)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    comm, rest = raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22
    return Proc(pid, comm, int(rest[1]), (int(rest[11]) + int(rest[12])) * TICK_S, int(rest[19]))


def all_procs() -> dict[int, Proc]:
    found = (read_proc(int(d.name)) for d in PROC.iterdir() if d.name.isdigit())
    return {p.pid: p for p in found if p is not None}


def cmdline(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def descendants(procs: Mapping[int, Proc], roots: Iterable[int]) -> set[int]:
    """The roots (those still running) and every process below them."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = set(), [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def postgres_backends(procs: Mapping[int, Proc], database: str | None = None) -> set[int]:
    """Postgres processes; with `database`, only those whose title names it (its backends and
    autovacuum workers; a backend's title is `postgres: … USER DATABASE HOST(PORT) STATE`)."""
    pids = {p.pid for p in procs.values() if p.comm == "postgres"}
    if database is None:
        return pids
    return {pid for pid in pids if f" {database} " in f"{cmdline(pid)} "}


def broker_pid(bootstrap: str) -> int | None:
    """The Tansu process listening on `bootstrap` (it runs in its own session, not our child)."""
    for pid in all_procs():
        line = cmdline(pid)
        if "tansu" in line and f"tcp://{bootstrap} " in f"{line} ":
            return pid
    return None


def machine_s() -> tuple[float, float]:
    """CPU seconds since boot, all cores: busy (neither idle, iowait nor stolen), and stolen
    by the hypervisor (other tenants of the host)."""
    fields = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq) * TICK_S, steal * TICK_S


def uptime_tick() -> int:
    return int(float((PROC / "uptime").read_text().split()[0]) / TICK_S)


Roles = Callable[[Mapping[int, Proc]], Mapping[str, set[int]]]
"""Which pids make up each role right now, e.g. {"workers": {…}, "broker": {…}}."""


@dataclass
class CpuMeter:
    """CPU seconds per role since the meter was made.

    Each `sample()` rereads /proc: a process seen for the first time counts from zero if it
    started after the meter, else from what it had used then; a process that ended keeps what
    it had used when last seen (so sample often enough for short-lived ones).
    """

    roles: Roles
    started_tick: int = field(default_factory=uptime_tick)
    started: float = field(default_factory=time.perf_counter)
    machine0: tuple[float, float] = field(default_factory=machine_s)
    base: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    members: dict[str, set[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sample()

    def sample(self) -> CpuSample:
        procs = all_procs()
        for role, pids in self.roles(procs).items():
            self.members.setdefault(role, set()).update(pids)
            for pid in pids:
                p = procs[pid]
                self.base.setdefault(pid, 0.0 if p.started_tick >= self.started_tick else p.cpu_s)
                self.last[pid] = p.cpu_s
        used = {role: sum(self.last[p] - self.base[p] for p in pids)
                for role, pids in self.members.items()}
        busy, steal = machine_s()
        used["machine"], used["stolen"] = busy - self.machine0[0], steal - self.machine0[1]
        return CpuSample(time.perf_counter() - self.started, used)


@dataclass(frozen=True)
class CpuSample:
    """Seconds since the meter started and CPU seconds per role (and the whole machine) since."""

    wall_s: float
    cpu_s: dict[str, float]

    def cores_since(self, earlier: CpuSample) -> dict[str, float]:
        """Average cores each role used between the two samples (2.0 = both cores of 2)."""
        span = self.wall_s - earlier.wall_s
        return {role: round((s - earlier.cpu_s.get(role, 0.0)) / span, 3) if span > 0 else 0.0
                for role, s in self.cpu_s.items()}
