"""`python -m bench.run [--orders N]`: passthrough baseline, each stage alone, whole pipeline."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from bench.harness import Bench, add_common_args, run_session
from bench.offsets import log_ends
from bench.passthrough import passthrough
from bench.pipeline import PipelineRun, run_pipeline
from bench.report import figures, table
from bench.services import fresh_database
from bench.stages import time_stage
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
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES
from schemas.errors import OrderhubError
from schemas.topics import DLQ, HELD, NORMALIZED, RAW, REVIEW

log = logging.getLogger("bench")
WARMUP = 20
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


def measure(bench: Bench, stack: ExitStack, args: argparse.Namespace) -> dict[str, Any]:
    """(a), (a'), (b) and (c) on one broker, then the figures with their ratios."""
    orders = demo_orders(WARMUP + args.orders)
    warmup, measured = orders[:WARMUP], orders[WARMUP:]
    passthrough_result = run_passthrough(bench, measured)
    default_result = run_passthrough(bench, measured, tuned=False)
    stages_result = run_stages(bench, stack, measured)
    e2e = run_end_to_end(bench, stack, warmup, measured)
    results: dict[str, Any] = {
        "orders": args.orders, "warmup_orders": WARMUP,
        "producer": producer_settings(bench.base),
        "passthrough": passthrough_result, "passthrough_default": default_result,
        "stages": stages_result,
        "end_to_end": {"timing": e2e.timing.as_dict(), "warmup_s": e2e.warmup_s,
                       "produce_s": e2e.produce_s, "latency": e2e.latency.as_dict()},
    }
    rows, baseline = figures(results, args.orders)
    d = results["passthrough_default"]["timing"]
    second = d["steady_rate"] or d["total_rate"]
    results["table"] = [
        {"figure": f.name, "value": f.value, "unit": f.unit,
         "ratio_to_a": f.value / baseline if f.rate else None,
         "ratio_to_a_default": f.value / second if f.rate else None} for f in rows]
    return results


def show(results: dict[str, Any]) -> str:
    rows, baseline = figures(results, results["orders"])
    d = results["passthrough_default"]["timing"]
    return table(rows, baseline, d["steady_rate"] or d["total_rate"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--orders", type=int, default=5000, help="orders per phase (default 5000)")
    add_common_args(p, timeout=900, phase_timeout=240)
    args = p.parse_args(argv)
    if args.orders < 1:
        p.error("--orders must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_session("run", args, lambda bench, stack: measure(bench, stack, args), show)


if __name__ == "__main__":
    sys.exit(main())
