"""Figures (c): every stage running, a burst of orders into orders.raw, raw → notified latency."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    Message,
    TopicPartition,
)
from sqlalchemy import Engine, text

from bench.measure import Timing
from bench.offsets import Ends, group_lag, log_ends, stage_groups
from bench.workers import Deadline, ensure_running, spawn, stop
from bench.workload import Orders, ingest_producer, produce_orders
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES
from schemas.errors import OrderhubError
from schemas.events import BuyerNotified
from schemas.topics import NOTIFIED

POLL_S = 0.05


@dataclass(frozen=True)
class Latency:
    """raw → notified seconds over the measured orders."""

    count: int
    min: float
    p50: float
    p99: float
    max: float
    timestamp_type: str

    def as_dict(self) -> dict[str, float | int | str]:
        return {"orders": self.count, "min_s": self.min, "p50_s": self.p50, "p99_s": self.p99,
                "max_s": self.max, "notified_timestamp": self.timestamp_type}


@dataclass(frozen=True)
class PipelineRun:
    warmup_s: float
    timing: Timing
    produce_s: float
    latency: Latency


def run_pipeline(
    settings: Settings, endpoints: Endpoints, engine: Engine, warmup: Orders, orders: Orders,
    log_dir: Path, phase_timeout: float,
) -> PipelineRun:
    """Start all stages, warm them up on a few orders, then time a burst of `orders`."""
    with ExitStack() as stack:
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for name in STAGES:
            procs[name] = spawn(name, settings, endpoints, log_dir)
            stack.callback(stop, procs[name])
        watch = Watch(procs, settings, endpoints, engine, log_dir)
        producer = stack.enter_context(ingest_producer(endpoints.bootstrap))
        started = time.perf_counter()
        produce_orders(producer, settings, warmup)
        watch.until_drained(len(warmup), started, Deadline(phase_timeout, "pipeline warm-up"))
        warmup_s = time.perf_counter() - started
        deadline = Deadline(phase_timeout, "end-to-end run")
        started = time.perf_counter()
        received = produce_orders(producer, settings, orders)
        produce_s = time.perf_counter() - started
        timing = watch.until_drained(len(warmup) + len(orders), started, deadline)
    stamps = notified_at(endpoints.bootstrap, NOTIFIED.full_name(settings.kafka.topic_prefix),
                         settings.kafka.partitions, Deadline(phase_timeout, "reading notified"))
    return PipelineRun(warmup_s, timing, produce_s, latency(received, stamps))


@dataclass(frozen=True)
class Watch:
    """Polls the notifications send log, then the groups' committed offsets, of a running hub."""

    procs: dict[str, subprocess.Popen[bytes]]
    settings: Settings
    endpoints: Endpoints
    engine: Engine
    log_dir: Path

    def until_drained(self, total: int, started: float, deadline: Deadline) -> Timing:
        """Wait for `total` notifications, then for every group to commit its inputs' ends;
        the timing counts the notifications that were not there yet when called."""
        before = self._notifications()
        first: tuple[float, int] | None = None
        while (done := self._notifications()) < total:
            self._check(deadline)
            if done > before and first is None:
                first = (time.perf_counter() - started, done)
            time.sleep(POLL_S)
        done_s = time.perf_counter() - started
        first = first or (done_s, done)
        groups = stage_groups(self.settings, STAGES)
        inputs = sorted({t for topics in groups.values() for t in topics})  # shared inputs once
        ends = log_ends(self.endpoints.bootstrap, inputs, self.settings.kafka.partitions)
        while group_lag(self.endpoints.bootstrap, groups, ends) != 0:
            self._check(deadline)
            time.sleep(POLL_S)
        return Timing(total - before, first[0], first[1] - before, done_s,
                      time.perf_counter() - started)

    def _check(self, deadline: Deadline) -> None:
        deadline.check()
        ensure_running(self.procs, self.log_dir)

    def _notifications(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM notifications WHERE emitted_at IS NOT NULL")).scalar_one())


def notified_at(
    bootstrap: str, topic: str, partitions: int, deadline: Deadline
) -> dict[str, tuple[float, int]]:
    """Each order's earliest BuyerNotified message timestamp (Unix seconds) and its type."""
    return first_stamps(bootstrap, topic, partitions, deadline, _notified_order)


def _notified_order(msg: Message) -> str:
    return BuyerNotified.model_validate_json(msg.value() or b"").order_id


def first_stamps(
    bootstrap: str, topic: str, partitions: int, deadline: Deadline,
    ident: Callable[[Message], str], start: Ends | None = None,
) -> dict[str, tuple[float, int]]:
    """The earliest message timestamp (Unix seconds) and its type of each `ident(message)`
    on the topic, from `start` (default: the beginning) up to the log ends when called."""
    ends = log_ends(bootstrap, [topic], partitions)
    begin = {p: (start or {}).get((topic, p), 0) for p in range(partitions)}
    left = {p for (_t, p), end in ends.items() if end > begin[p]}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader",
                         "enable.auto.commit": False})
    stamps: dict[str, tuple[float, int]] = {}
    try:
        consumer.assign([TopicPartition(topic, p, begin[p] or OFFSET_BEGINNING) for p in left])
        while left:
            deadline.check()
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() is not None:
                    raise OrderhubError(f"reading {topic}: {msg.error()}")
                kind, ms = msg.timestamp()
                name = ident(msg)
                if name not in stamps or ms / 1000 < stamps[name][0]:
                    stamps[name] = (ms / 1000, kind)
                if (msg.offset() or 0) + 1 >= ends[(topic, msg.partition() or 0)]:
                    left.discard(msg.partition() or 0)
        return stamps
    finally:
        consumer.close()


def latency(received: dict[str, float], stamps: dict[str, tuple[float, int]]) -> Latency:
    """Per order: BuyerNotified timestamp minus RawOrderReceived.received_at."""
    missing = [o for o in received if o not in stamps]
    if missing:
        raise OrderhubError(f"{len(missing)} order(s) never notified, e.g. {missing[0]}")
    seconds: Sequence[float] = sorted(stamps[o][0] - at for o, at in received.items())
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    kinds = {stamps[o][1] for o in received}
    kind = "CreateTime" if kinds == {TIMESTAMP_CREATE_TIME} else f"types {sorted(kinds)}"
    return Latency(len(seconds), seconds[0], cuts[49], cuts[98], seconds[-1], kind)
