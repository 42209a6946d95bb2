"""`python -m bench.inproc [--orders N] [--batch B] [--profile STAGE]`: each stage's runner in one
process on real Postgres, without a broker: where a batch's time goes.

Diagnostic, not a throughput claim (`bench.run` is that): the four stages run one after another
in this process, each on the outputs the previous one produced (serialized to bytes as on the
topics), with `send` collecting the outputs instead of producing them. Per stage it reports the
wall and CPU time of `prepare` and of the batch transaction, the SQL statements it ran and how
long the database took to answer them. `--profile STAGE` runs that stage under cProfile and prints
its top functions. The notify sender is not run (bench.notify_send measures it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event

from bench.services import fresh_database, postgres_server
from bench.workload import demo_orders, raw_messages, stock_up
from runtime.db import make_engine, migrate
from runtime.metrics import build_stage_metrics
from runtime.runner import Emit, Record, StageRunner
from runtime.settings import Settings
from runtime.stages import STAGES, group_id
from runtime.worker import tune_gc
from schemas.topics import RAW

log = logging.getLogger("bench.inproc")


@dataclass
class Tally:
    """What one stage's batches cost."""

    messages: int = 0
    batches: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    statements: int = 0
    sql_wall_s: float = 0.0
    outputs: list[Emit] = field(default_factory=list)
    by_statement: dict[str, list[Any]] = field(default_factory=dict)

    def row(self, name: str) -> str:
        per = 1000.0 / max(self.messages, 1)
        return (f"| {name:<9} | {self.messages:>6} | {self.messages / self.wall_s:>8,.0f} | "
                f"{1000 * self.wall_s * per:>8.1f} | {1000 * self.cpu_s * per:>8.1f} | "
                f"{1000 * self.sql_wall_s * per:>8.1f} | {self.statements / self.batches:>9.1f} |")


def _count_sql(engine: Engine, tally: Tally) -> None:
    started: dict[int, tuple[float, float]] = {}

    def before(conn: Any, cursor: Any, *_: Any) -> None:
        started[id(cursor)] = (time.perf_counter(), time.process_time())

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        wall, cpu = started.pop(id(cursor), (time.perf_counter(), time.process_time()))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        tally.statements += 1
        tally.sql_wall_s += wall
        seen = tally.by_statement.setdefault(" ".join(statement.split())[:72], [0, 0.0, 0.0])
        seen[0] += 1
        seen[1] += wall
        seen[2] += cpu

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)


def _records(outputs: Sequence[Emit], prefix: str, partitions: int,
             offsets: dict[tuple[str, int], int]) -> list[Record]:
    """The outputs as the next stage would consume them: bytes on a partition by key."""
    records = []
    for out in outputs:
        topic = out.topic.full_name(prefix)
        part = zlib.crc32(out.key.encode()) % partitions
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        records.append(Record(topic, part, offset, out.key.encode(),
                              out.value.model_dump_json().encode()))
    return records


async def _run_stage(name: str, settings: Settings, url: str, records: list[Record],
                     batch: int) -> Tally:
    engine = make_engine(url)
    tally = Tally()
    _count_sql(engine, tally)

    async def send(outputs: Sequence[Emit]) -> None:
        tally.outputs.extend(outputs)

    registry = CollectorRegistry()
    runner = StageRunner(STAGES[name].build(settings, registry), engine=engine, send=send,
                         metrics=build_stage_metrics(name, registry), settings=settings,
                         group=group_id(settings, name))
    try:
        for start in range(0, len(records), batch):
            part = records[start:start + batch]
            wall, cpu = time.perf_counter(), time.process_time()
            await runner.run_batch(part)
            tally.wall_s += time.perf_counter() - wall
            tally.cpu_s += time.process_time() - cpu
            tally.messages += len(part)
            tally.batches += 1
    finally:
        engine.dispose()
    return tally


def run(args: argparse.Namespace) -> dict[str, Tally]:
    settings = Settings()
    prefix, partitions = settings.kafka.topic_prefix, settings.kafka.partitions
    orders = demo_orders(args.orders)
    raw = [Record(t, zlib.crc32(k.encode()) % partitions, i, k.encode(), v)
           for i, (t, k, v) in enumerate(raw_messages(orders, RAW.full_name(prefix),
                                                      datetime.now(UTC)))]
    tallies: dict[str, Tally] = {}
    if args.gc == "tuned":
        tune_gc()  # as the stage workers do
    with tempfile.TemporaryDirectory() as scratch, postgres_server(Path(scratch)) as server, \
            fresh_database(server, f"bench_inproc_{int(time.time())}") as url:
        migrate(url)
        stock_up(url, orders)
        offsets: dict[tuple[str, int], int] = {}
        pending: dict[str, list[Record]] = {name: [] for name in STAGES}
        pending["normalize"] = raw
        for name in STAGES:
            sources = {s.full_name(prefix) for s in STAGES[name].sources}
            records = [r for r in pending[name] if r.topic in sources]
            profiler = cProfile.Profile() if args.profile == name else None
            if profiler:
                profiler.enable()
            tallies[name] = asyncio.run(_run_stage(name, settings, url, records, args.batch))
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats(args.sort).print_stats(45)
            produced = _records(tallies[name].outputs, prefix, partitions, offsets)
            for later in STAGES:
                pending[later] = pending[later] + produced if later != name else []
    return tallies


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__)
    p.add_argument("--orders", type=int, default=5000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--profile", choices=list(STAGES), help="cProfile this stage")
    p.add_argument("--gc", choices=("tuned", "default"), default="tuned",
                   help="the workers' garbage-collector settings, or Python's defaults")
    p.add_argument("--sql", action="store_true", help="time each kind of SQL statement")
    p.add_argument("--sort", default="tottime", help="pstats sort key (default tottime)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    tallies = run(args)
    print("| stage     | msgs   | msg/s    | ms/1000  | CPU ms/1000 | SQL ms/1000 | stmts/batch |")
    print("|-----------|-------:|---------:|---------:|---------:|---------:|----------:|")
    for name, tally in tallies.items():
        print(tally.row(name))
    if args.sql:
        for name, tally in tallies.items():
            print(f"\n{name}: statements by total wall time (count, wall ms, client CPU ms)")
            ranked = sorted(tally.by_statement.items(), key=lambda kv: -kv[1][1])
            for statement, (count, wall, cpu) in ranked[:8]:
                print(f"  {count:>6} {1000 * wall:>8.1f} {1000 * cpu:>8.1f}  {statement}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
