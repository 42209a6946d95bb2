"""`python -m bench.latency [--rates 500,1000,2000] [--seconds 20]`: raw → notified latency at
steady rates and at saturation, each step next to one bare aiokafka hop fed the same way."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message, Producer

from bench.cpu import CpuMeter, Proc, Roles, broker_pid, descendants, postgres_backends
from bench.harness import Bench, add_common_args, run_session, settings_line
from bench.hop import FETCH_MAX_WAIT_MS, spawn_hop
from bench.latency_report import segments, step_figures, tables
from bench.offsets import group_lag, log_ends
from bench.pipeline import Watch, first_stamps, notified_at
from bench.services import fresh_database
from bench.workers import BenchTimeout, Deadline, ensure_running, spawn, stop
from bench.workload import Orders, Paced, demo_orders, ingest_producer, produce_paced, stock_up
from runtime.db import make_engine, migrate
from runtime.services import Endpoints
from runtime.settings import KafkaSettings, Settings
from runtime.stages import STAGES
from schemas.topics import ACCEPTED, ALLOCATED, NORMALIZED, NOTIFIED, RAW, TopicSpec

log = logging.getLogger("bench")
WARMUP = 20
SEGMENTS = (NORMALIZED, ACCEPTED, ALLOCATED, NOTIFIED)
"""Each stage's output topic, in pipeline order, all keyed by canonical order id."""
POLL_S = 0.05


@dataclass(frozen=True)
class Step:
    """One load step: `rate` orders/s for `count` orders, or a burst (`rate` None)."""

    label: str
    rate: float | None
    count: int


@dataclass(frozen=True)
class Rig:
    """What every step uses: the running pipeline and hop, the producer, the CPU meter."""

    bench: Bench
    pipeline: Settings
    watch: Watch
    hop: Settings
    producer: Producer
    meter: CpuMeter
    drain_timeout: float

    @property
    def partitions(self) -> int:
        return self.pipeline.kafka.partitions

    def topic(self, settings: Settings, spec: TopicSpec) -> str:
        return spec.full_name(settings.kafka.topic_prefix)


def hop_group(settings: Settings) -> str:
    return f"{settings.kafka.group_prefix}-hop"


def plan(rates: Sequence[float], seconds: float, burst: int) -> list[Step]:
    steps = [Step(f"{r:g}/s", r, round(r * seconds)) for r in rates]
    return steps + ([Step(f"burst {burst}", None, burst)] if burst else [])


def measure(bench: Bench, stack: ExitStack, args: argparse.Namespace) -> dict[str, Any]:
    """Start the pipeline and the hop once, warm both up, then run the steps in order."""
    steps = plan(args.rates, args.seconds, args.burst)
    orders = demo_orders(WARMUP + sum(s.count for s in steps))
    rig = _rig(bench, stack, orders, args)
    _warm_up(rig, orders[:WARMUP])
    done, results, at = WARMUP, [], WARMUP
    for step in steps:
        part = orders[at : at + step.count]
        at += step.count
        log.info("step %s: %d orders, hop first", step.label, step.count)
        hop = _hop_step(rig, part, step.rate)
        pipeline = _pipeline_step(rig, part, step.rate, done + step.count)
        done += step.count
        results.append({"step": step.label, "target_rate": step.rate, "orders": step.count,
                        "pipeline": pipeline, "hop": hop})
        if not pipeline["drained"] or not hop["drained"]:
            log.error("step %s did not drain; later steps skipped", step.label)
            break
    return {"rates": args.rates, "seconds": args.seconds, "burst": args.burst,
            "hop_fetch_max_wait_ms": args.hop_fetch_wait_ms,
            "warmup_orders": WARMUP, "drain_timeout_s": args.drain_timeout,
            "kept_up_rule": "last fifth's p50 within 0.5 s of the first fifth's, all notified",
            "steps": results}


def _rig(bench: Bench, stack: ExitStack, orders: Orders, args: argparse.Namespace) -> Rig:
    s, h = bench.settings("latency"), bench.settings("hop")
    db = f"bench_{bench.run_id}_latency"
    url = stack.enter_context(fresh_database(bench.server, db))
    migrate(url)
    bench.topics(s)
    bench.topics(h, (RAW, NORMALIZED))
    stock_up(url, orders)
    engine = make_engine(url)
    stack.callback(engine.dispose)
    endpoints = Endpoints(bench.bootstrap, url)
    procs = {name: spawn(name, s, endpoints, bench.scratch) for name in STAGES}
    procs["hop"] = spawn_hop(
        bench.bootstrap, [RAW.full_name(h.kafka.topic_prefix)],
        NORMALIZED.full_name(h.kafka.topic_prefix), group=hop_group(h),
        batch_size=s.stage.batch_size, session_timeout_s=s.kafka.session_timeout_s,
        log_path=bench.scratch / "hop.log", fetch_max_wait_ms=args.hop_fetch_wait_ms)
    for proc in procs.values():
        stack.callback(stop, proc)
    producer = stack.enter_context(ingest_producer(bench.bootstrap))
    meter = CpuMeter(_roles(procs, bench.bootstrap, db))
    return Rig(bench, s, Watch(procs, s, endpoints, engine, bench.scratch), h, producer, meter,
               args.drain_timeout)


def _roles(procs: dict[str, subprocess.Popen[bytes]], bootstrap: str, database: str) -> Roles:
    stages = [p.pid for n, p in procs.items() if n != "hop"]
    hop, tansu, me = procs["hop"].pid, broker_pid(bootstrap), os.getpid()

    def roles(found: Mapping[int, Proc]) -> dict[str, set[int]]:
        return {"workers": descendants(found, stages), "hop": descendants(found, [hop]),
                "broker": {tansu} & found.keys() if tansu else set(),
                "postgres_db": postgres_backends(found, database),
                "postgres_all": postgres_backends(found), "harness": {me} & found.keys()}

    return roles


def _warm_up(rig: Rig, warmup: Orders) -> None:
    """Both paths have joined their groups and run a batch before anything is measured."""
    started = time.perf_counter()
    _hop_step(rig, warmup, None)
    produce_paced(rig.producer, rig.topic(rig.pipeline, RAW), warmup, None)
    rig.watch.until_drained(len(warmup), started, rig.bench.deadline("warm-up"))
    log.info("warmed up in %.1fs", time.perf_counter() - started)


def _hop_step(rig: Rig, orders: Orders, rate: float | None) -> dict[str, Any]:
    source, sink = rig.topic(rig.hop, RAW), rig.topic(rig.hop, NORMALIZED)
    before = rig.meter.sample()
    paced = produce_paced(rig.producer, source, orders, rate)
    deadline = Deadline(rig.drain_timeout, "hop step drain")
    drained = _hop_drained(rig, source, deadline)
    cores = rig.meter.sample().cores_since(before)
    stamps = first_stamps(rig.bench.bootstrap, sink, rig.partitions,
                          rig.bench.deadline("reading the hop's sink"), _key)
    return _figures(paced, paced.by_key, stamps, drained, cores)


def _hop_drained(rig: Rig, source: str, deadline: Deadline) -> bool:
    ends = log_ends(rig.bench.bootstrap, [source], rig.partitions)
    while group_lag(rig.bench.bootstrap, {hop_group(rig.hop): [source]}, ends):
        if time.monotonic() > deadline.at:
            return False
        ensure_running(rig.watch.procs, rig.bench.scratch)
        time.sleep(POLL_S)
    return True


def _pipeline_step(rig: Rig, orders: Orders, rate: float | None, total: int) -> dict[str, Any]:
    topics = [rig.topic(rig.pipeline, t) for t in SEGMENTS]
    start = log_ends(rig.bench.bootstrap, topics, rig.partitions)
    before = rig.meter.sample()
    started = time.perf_counter()
    paced = produce_paced(rig.producer, rig.topic(rig.pipeline, RAW), orders, rate)
    try:
        rig.watch.until_drained(total, started, Deadline(rig.drain_timeout, "pipeline drain"))
        drained = True
    except BenchTimeout:
        drained = False
    cores = rig.meter.sample().cores_since(before)
    deadline = rig.bench.deadline("reading the stages' outputs")
    stamps = notified_at(rig.bench.bootstrap, topics[-1], rig.partitions, deadline)
    hops = [(spec.name, first_stamps(rig.bench.bootstrap, topic, rig.partitions, deadline, _key,
                                     start)) for spec, topic in zip(SEGMENTS, topics, strict=True)]
    return {**_figures(paced, paced.by_order, stamps, drained, cores),
            "segments": segments(paced.by_order, hops)}


def _figures(paced: Paced, received: dict[str, float], stamps: dict[str, tuple[float, int]],
             drained: bool, cores: dict[str, float]) -> dict[str, Any]:
    return {"produce": {"achieved_rate": paced.rate, "produced_s": paced.produced_s,
                        "acked_s": paced.acked_s, "max_tick_late_s": paced.max_late_s},
            "drained": drained, "cores": cores, **step_figures(received, stamps)}


def _key(msg: Message) -> str:
    return (msg.key() or b"").decode()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    p.add_argument("--rates", type=_rates, default=[500.0, 1000.0, 2000.0],
                   help="orders/s, comma-separated (default 500,1000,2000)")
    p.add_argument("--seconds", type=float, default=20, help="per rate (default 20)")
    p.add_argument("--burst", type=int, default=5000,
                   help="orders of the saturation step, produced at once (0: none; default 5000)")
    p.add_argument("--drain-timeout", type=float, default=300,
                   help="after a step's last produce, seconds to wait for it (default 300)")
    p.add_argument("--hop-fetch-wait-ms", type=int,
                   default=KafkaSettings().fetch_max_wait_ms,
                   help="the hop consumer's fetch_max_wait_ms (default: the stages' "
                        f"ORDERHUB_KAFKA__FETCH_MAX_WAIT_MS default; aiokafka's own is "
                        f"{FETCH_MAX_WAIT_MS})")
    add_common_args(p, timeout=1800, phase_timeout=240)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.burst < 0:
        p.error("--seconds must be positive and --burst at least 0")
    return args


def _rates(text: str) -> list[float]:
    rates = [float(r) for r in text.split(",") if r.strip()]
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive numbers, e.g. 500,1000")
    return rates


def _show(results: dict[str, Any]) -> str:
    return "\n".join([settings_line(results["settings"]), f"broker: {results['broker']}",
                      tables(results["steps"])])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_session("latency", args, lambda bench, stack: measure(bench, stack, args), _show)


if __name__ == "__main__":
    sys.exit(main())
