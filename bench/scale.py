"""`python -m bench.scale [--stage normalize] [--orders 20000]`: one worker of a stage, then two
in one group (6 partitions → 3 each), on copies of the same input; one and two bare aiokafka
hops on that input; the CPU each process got, to explain the gap to twice the rate."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine

from bench.cpu import CpuMeter, CpuSample, Proc, broker_pid, descendants, postgres_backends
from bench.harness import Bench, add_common_args, run_session, settings_line
from bench.hop import spawn_hop
from bench.measure import Timing
from bench.offsets import group_lag, log_ends
from bench.scale_report import ratios, tables
from bench.services import Postgres, database_url, fresh_database, libpq
from bench.stages import time_stage
from bench.topic_copy import copy_topics
from bench.workers import Deadline, spawn, stop, tracked
from bench.workload import demo_orders, ingest_producer, produce_paced, stock_up
from runtime.db import make_engine, migrate
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES, group_id
from schemas.errors import OrderhubError
from schemas.topics import NORMALIZED, RAW

log = logging.getLogger("bench")
SCALED = ("normalize", "dedup", "allocate")
POLL_S = 0.1
CPU_EVERY_S = 0.5


@dataclass(frozen=True)
class Procs:
    """The processes of one measurement, each with the log file it writes."""

    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]

    def check(self) -> None:
        for name, proc in self.procs.items():
            if (rc := proc.poll()) is not None:
                raise OrderhubError(f"{name} exited with code {rc}; see {self.logs[name]}")

    def stop(self) -> None:
        for proc in self.procs.values():
            stop(proc)


def measure(bench: Bench, stack: ExitStack, args: argparse.Namespace) -> dict[str, Any]:
    """Fill the stage's inputs once (seed topics, seed database), then time each run on its copy."""
    seed = bench.settings("seed")
    seed_db = f"bench_{bench.run_id}_seed"
    upstream = _fill(bench, stack, seed, seed_db, args)
    sources = [s.full_name(seed.kafka.topic_prefix) for s in STAGES[args.stage].sources]
    runs: dict[str, Any] = {}
    for n in sorted({1, args.workers}):
        log.info("aiokafka hop x%d", n)
        runs[f"hop x{n}"] = _hops(bench, n, sources)
        log.info("%s x%d", args.stage, n)
        runs[f"{args.stage} x{n}"] = _stage(bench, args.stage, n, seed, seed_db)
    return {"stage": args.stage, "orders": args.orders, "workers": args.workers,
            "upstream": upstream, "runs": runs, "ratios": ratios(runs, args.stage, args.workers)}


def _fill(bench: Bench, stack: ExitStack, seed: Settings, seed_db: str,
          args: argparse.Namespace) -> dict[str, Any]:
    """orders.raw with the orders, then each stage upstream of the measured one, alone."""
    url = stack.enter_context(fresh_database(bench.server, seed_db))
    migrate(url)
    bench.topics(seed)
    orders = demo_orders(args.orders)
    stock_up(url, orders)
    with ingest_producer(bench.bootstrap) as producer:
        produce_paced(producer, RAW.full_name(seed.kafka.topic_prefix), orders, None)
    engine = make_engine(url)
    try:
        upstream = list(STAGES)[: list(STAGES).index(args.stage)]
        return {name: time_stage(name, seed, Endpoints(bench.bootstrap, url), engine,
                                 bench.scratch, bench.deadline(f"upstream {name}")).as_dict()
                for name in upstream}
    finally:
        engine.dispose()


def _stage(bench: Bench, name: str, n: int, seed: Settings, seed_db: str) -> dict[str, Any]:
    """n workers of the stage on a copy of the seed's inputs and a clone of its database."""
    s = bench.settings(f"{name}-x{n}")
    bench.topics(s)
    sources = {spec.full_name(seed.kafka.topic_prefix): spec.full_name(s.kafka.topic_prefix)
               for spec in STAGES[name].sources}
    copy_topics(bench.bootstrap, sources, s.kafka.partitions)
    ends = log_ends(bench.bootstrap, list(sources.values()), s.kafka.partitions)
    group, db = group_id(s, name), f"bench_{bench.run_id}_{name}_x{n}"
    with cloned_database(bench.server, seed_db, db) as url:
        engine = make_engine(url)
        try:
            procs = _spawn_workers(bench, name, n, s, Endpoints(bench.bootstrap, url))
            try:
                return _time(bench, procs, ends, group, db, _tracked(engine, group))
            finally:
                procs.stop()
        finally:
            engine.dispose()


def _tracked(engine: Engine, group: str) -> Callable[[], int]:
    return lambda: tracked(engine, group)


def _spawn_workers(bench: Bench, name: str, n: int, s: Settings, endpoints: Endpoints) -> Procs:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    for i in range(1, n + 1):
        log_dir = bench.scratch / f"{name}-x{n}-{i}"
        log_dir.mkdir()
        procs[f"{name} #{i}"] = spawn(name, s, endpoints, log_dir)
        logs[f"{name} #{i}"] = log_dir / f"{name}.log"
    return Procs(procs, logs)


def _hops(bench: Bench, n: int, sources: Sequence[str]) -> dict[str, Any]:
    """n hop processes in one fresh group over the seed's inputs, into a sink of their own."""
    h = bench.settings(f"hop-x{n}")
    bench.topics(h, (NORMALIZED,))
    group = f"{h.kafka.group_prefix}-hop"
    ends = log_ends(bench.bootstrap, sources, h.kafka.partitions)
    procs, logs = {}, {}
    for i in range(1, n + 1):
        logs[f"hop #{i}"] = path = bench.scratch / f"hop-x{n}-{i}.log"
        procs[f"hop #{i}"] = spawn_hop(
            bench.bootstrap, sources, NORMALIZED.full_name(h.kafka.topic_prefix), group=group,
            batch_size=h.stage.batch_size, session_timeout_s=h.kafka.session_timeout_s,
            log_path=path)
    hops = Procs(procs, logs)
    expected = sum(ends.values())
    try:
        return _time(bench, hops, ends, group, None,
                     lambda: expected - group_lag(bench.bootstrap, {group: sources}, ends))
    finally:
        hops.stop()


def _time(bench: Bench, procs: Procs, ends: Mapping[tuple[str, int], int], group: str,
          database: str | None, progress: Callable[[], int]) -> dict[str, Any]:
    """From spawn: the first batch done, every input done (`progress`), the group's lag 0;
    CPU per process over the steady part (first batch → last) and over the whole."""
    started = time.perf_counter()
    meter = CpuMeter(_roles(procs, bench.bootstrap, database))
    expected = sum(ends.values())
    if expected == 0:
        raise OrderhubError("nothing to consume")
    watch = _Progress(bench.deadline(f"{group} run"), procs, meter, started)
    first = watch.until(progress, lambda done: done > 0)
    done = watch.until(progress, lambda count: count >= expected)
    groups = {group: sorted({t for t, _p in ends})}
    watch.until(lambda: group_lag(bench.bootstrap, groups, dict(ends)), lambda lag: lag == 0,
                record=False)
    end = meter.sample()
    timing = Timing(expected, first.at, first.value, done.at, end.wall_s)
    return {"processes": len(procs.procs), "timing": timing.as_dict(),
            "cores_steady": done.cpu.cores_since(first.cpu),
            "cpu_s_steady": {r: round(s - first.cpu.cpu_s.get(r, 0.0), 2)
                             for r, s in done.cpu.cpu_s.items()},
            "cores_whole": end.cores_since(watch.start), "progress": watch.series}


@dataclass(frozen=True)
class _Mark:
    at: float
    value: int
    cpu: CpuSample


class _Progress:
    """Polls a count until a condition holds, failing on the deadline or a dead process."""

    def __init__(self, deadline: Deadline, procs: Procs, meter: CpuMeter, started: float
                 ) -> None:
        self.deadline, self.procs, self.meter, self.started = deadline, procs, meter, started
        self.start = meter.sample()
        self.last_cpu = self.start
        self.series: list[tuple[float, int]] = []

    def until(self, read: Callable[[], int], holds: Callable[[int], bool], record: bool = True
              ) -> _Mark:
        """Poll `read` until `holds(value)`; `record`: keep the values read in `series`."""
        while True:
            self.deadline.check()
            self.procs.check()
            value, now = read(), time.perf_counter() - self.started
            if record and (not self.series or self.series[-1][1] != value):
                self.series.append((round(now, 3), value))
            if holds(value):
                return _Mark(now, value, self.meter.sample())
            if now - self.last_cpu.wall_s > CPU_EVERY_S:
                self.last_cpu = self.meter.sample()
            time.sleep(POLL_S)


def _roles(procs: Procs, bootstrap: str, database: str | None
           ) -> Callable[[Mapping[int, Proc]], dict[str, set[int]]]:
    tansu, me = broker_pid(bootstrap), os.getpid()
    pids = {name: proc.pid for name, proc in procs.procs.items()}

    def roles(found: Mapping[int, Proc]) -> dict[str, set[int]]:
        out = {name: descendants(found, [pid]) for name, pid in pids.items()}
        out["broker"] = {tansu} & found.keys() if tansu else set()
        if database is not None:
            out["postgres_db"] = postgres_backends(found, database)
        out["postgres_all"] = postgres_backends(found)
        out["harness"] = {me} & found.keys()
        return out

    return roles


@contextmanager
def cloned_database(server: Postgres, template: str, name: str) -> Iterator[str]:
    """A copy of `template` (CREATE DATABASE … TEMPLATE), so each run starts from the same
    state; yields its URL and drops it at exit. The template must have no connections."""
    ident = sql.Identifier(name)
    with psycopg.connect(libpq(server.admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            ident, sql.Identifier(template)))
    try:
        yield database_url(server, name)
    finally:
        with psycopg.connect(libpq(server.admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--stage", choices=SCALED, default="normalize")
    p.add_argument("--orders", type=int, default=20000, help="orders (default 20000)")
    p.add_argument("--workers", type=int, default=2, help="the scaled-out run (default 2)")
    add_common_args(p, timeout=1800, phase_timeout=300)
    args = p.parse_args(argv)
    if args.orders < 1 or args.workers < 2:
        p.error("--orders must be at least 1 and --workers at least 2")
    return args


def _show(results: dict[str, Any]) -> str:
    return "\n".join([settings_line(results["settings"]), f"broker: {results['broker']}",
                      tables(results)])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_session("scale", args, lambda bench, stack: measure(bench, stack, args), _show)


if __name__ == "__main__":
    sys.exit(main())
