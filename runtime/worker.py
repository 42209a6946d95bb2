"""One stage worker process: a faust app whose single agent feeds batches to the runner."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from typing import Any

import faust
from aiokafka.errors import KafkaError
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from runtime.db import make_engine
from runtime.faust_consumer import with_fetch_wait
from runtime.health import Heartbeat, serve_metrics
from runtime.kafka import committed_offsets
from runtime.metrics import StageMetrics, TopicPartition, build_stage_metrics, publish_lag
from runtime.runner import Emit, Record, StageRunner
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES, group_id
from schemas.errors import TransientError
from schemas.topics import TOPICS

log = logging.getLogger(__name__)
EXIT_HALTED = 75  # EX_TEMPFAIL: restart me, I resume from my last commit
WATCH_EVERY_S = 5.0  # consumer lag and the Postgres probe are refreshed this often
DB_FRESH_S = 30.0  # /readyz: Postgres must have answered within this long
Committed = Callable[[list[TopicPartition]], dict[TopicPartition, int]]


def make_app(settings: Settings, endpoints: Endpoints, app_id: str) -> faust.App:
    """A faust app on the given broker; topics come from the registry, never auto-declared."""
    brokers = ";".join(f"kafka://{h}" for h in endpoints.bootstrap.split(","))
    k = settings.kafka
    datadir = settings.data_dir.resolve() / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=brokers,
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=k.session_timeout_s,
        broker_heartbeat_interval=min(1.0, k.session_timeout_s / 3),
        broker_commit_interval=k.commit_interval_s,
        producer_acks=-1,
        producer_max_batch_size=k.producer_batch_bytes,
        producer_linger_ms=k.producer_linger_ms,
        producer_compression_type=(None if k.producer_compression == "none"
                                   else k.producer_compression),
        stream_buffer_maxsize=max(4096, settings.stage.batch_size * 4),
    )


class StageWatch:
    """Latency, consumer lag and readiness of one running faust stage.

    A partition's position is the next offset this worker will *process*: after each
    acknowledged batch, its last offset + 1; for a partition not processed yet since it was
    assigned, the group's committed offset (where faust starts reading it). Not the fetch
    position: faust prefetches thousands of messages into its buffers, unprocessed.
    """

    def __init__(self, app: faust.App, metrics: StageMetrics, names: Mapping[str, str],
                 engine: Engine, committed: Committed,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`names`: the source topics' full names → registry names (the gauge's labels);
        `committed`: reads the group's committed offsets (blocking; run in a thread)."""
        self.app = app
        self.metrics = metrics
        self.names = names
        self.engine = engine
        self.committed = committed
        self.clock = clock
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.positions: dict[TopicPartition, int] = {}
        self.lags: dict[TopicPartition, int] = {}
        self.shown: set[TopicPartition] = set()
        self.db_answered: float | None = None
        self.db_error = "Postgres not probed yet"

    def acknowledged(self, events: Sequence[Any]) -> None:
        """A batch's outputs were acknowledged: latency per message, positions forward."""
        now = time.time()
        for event in events:
            m = event.message
            if m.timestamp is not None:
                self.metrics.latency_seconds.observe(max(now - m.timestamp, 0.0))
            tp = (m.topic, m.partition)
            self.positions[tp] = max(self.positions.get(tp, 0), m.offset + 1)
        self.db_answered = self.clock()  # the batch's transaction committed

    async def on_assigned(self, _sender: Any, assigned: Set[Any], **_: Any) -> None:
        self.assigned = frozenset(self._ours(assigned))

    async def on_revoked(self, _sender: Any, revoked: Set[Any], **_: Any) -> None:
        gone = self._ours(revoked)
        self.assigned -= gone
        for tp in gone:
            self.positions.pop(tp, None)
            self.lags.pop(tp, None)
        self._publish()

    async def refresh(self) -> None:
        """Every WATCH_EVERY_S: assignment, positions, lag per partition, a Postgres probe."""
        try:
            self.assigned = frozenset(self._ours(self.app.consumer.assignment()))
        except faust.exceptions.ConsumerNotStarted:
            log.debug("no assignment yet")
        await self._learn_positions()
        self.positions = {tp: o for tp, o in self.positions.items() if tp in self.assigned}
        self.lags = {tp: max(hw - self.positions[tp], 0) for tp in self.assigned
                     if tp in self.positions and (hw := self._highwater(tp)) is not None}
        self._publish()
        await asyncio.to_thread(self._probe_postgres)

    def ready(self) -> tuple[bool, str]:
        if not self.assigned:
            return False, "no partitions assigned (starting, rebalancing, or a standby worker)"
        if self.db_answered is None or self.clock() - self.db_answered > DB_FRESH_S:
            return False, self.db_error
        return True, f"{len(self.assigned)} partition(s) assigned, Postgres answering"

    async def _learn_positions(self) -> None:
        missing = sorted(tp for tp in self.assigned if tp not in self.positions)
        if not missing:
            return
        try:
            found = await asyncio.to_thread(self.committed, missing)
        except (TransientError, KafkaException) as e:
            log.warning("consumer lag: committed offsets unknown for now: %s", e)
            return
        for tp, offset in found.items():
            self.positions.setdefault(tp, max(offset, 0))  # none committed: from the start

    def _highwater(self, tp: TopicPartition) -> int | None:
        try:
            value = self.app.consumer.highwater(faust.types.TP(*tp))
        except (AssertionError, AttributeError, KeyError,  # revoked meanwhile
                faust.exceptions.ConsumerNotStarted):
            return None
        return None if value is None else int(value)

    def _publish(self) -> None:
        labelled = {(self.names[t], p): lag for (t, p), lag in self.lags.items()}
        self.shown = publish_lag(self.metrics.consumer_lag, labelled, self.shown)

    def _probe_postgres(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as e:
            self.db_error = f"Postgres did not answer: {type(e).__name__}"
            log.warning("readiness: %s", self.db_error)
            return
        self.db_answered = self.clock()

    def _ours(self, tps: Set[Any]) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in tps if tp.topic in self.names}


GC_THRESHOLD = (20_000, 20, 20)
"""Python's default (700, 10, 10) runs a collection every 700 allocations: several per batch of
500 orders, each walking young objects, and a full one, over every module and class loaded at
start, every few hundred of those. Fewer young collections, and startup's objects frozen out of
the full ones, cut the CPU per message of dedup by a third and of allocate and notify by about
half in `bench.inproc --gc default|tuned` (BENCHMARKS.md); `bench.soak` checks the memory."""


def tune_gc() -> None:
    """After startup: what exists now lives as long as the process, so no collection needs to
    walk it again; young collections run once per 20,000 net allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run_stage(name: str, settings: Settings, endpoints: Endpoints, metrics_port: int) -> None:
    """Build the stage and run its worker until SIGTERM/SIGINT (or a fatal error)."""
    registry = CollectorRegistry()
    group = group_id(settings, name)
    app = make_app(settings, endpoints, group)
    with_fetch_wait(app, settings.kafka.fetch_max_wait_ms)
    stage = STAGES[name].build(settings, registry)
    prefix = settings.kafka.topic_prefix
    names = {s: s.full_name(prefix) for s in TOPICS}

    async def send(emits: Sequence[Emit]) -> None:
        """Straight to faust's aiokafka producer, past faust's Topic.send, which wraps each
        message in a FutureMessage, a PendingMessage and callbacks that nothing here uses."""
        producer = await app.maybe_start_producer()
        try:
            pending = [
                await producer.send(names[e.topic], e.key.encode(),
                                    e.value.model_dump_json().encode(), None, None, None)
                for e in emits
            ]
            await asyncio.gather(*pending)
        except KafkaError as e:
            raise TransientError(f"broker refused a send: {e}") from e

    engine = make_engine(endpoints.database_url, settings.database.pool_size)
    metrics = build_stage_metrics(name, registry)
    runner = StageRunner(stage, engine=engine, send=send, metrics=metrics, settings=settings,
                         group=group)
    watch = StageWatch(app, metrics, {s.full_name(prefix): s.name for s in stage.sources},
                       engine, lambda tps: committed_offsets(endpoints.bootstrap, group, tps))
    source = app.topic(*(s.full_name(prefix) for s in stage.sources),
                       key_serializer="raw", value_serializer="raw")

    async def consume(stream: Any) -> None:
        batch, within = settings.stage.batch_size, settings.stage.batch_within_s
        async for events in stream.take_events(batch, within=within):
            records = [_record(e.message) for e in events]
            try:
                await runner.run_batch(records)
            except Exception:
                _halt(name)
            watch.acknowledged(events)

    app.agent(source, name=f"{name}-agent", concurrency=1)(consume)
    _watch_with(app, watch)
    background = getattr(stage, "background", None)
    if background is not None:  # notify's sender works its send log next to the agent
        _run_beside(app, name, lambda stop: background(engine, send, stop))
    heartbeat = Heartbeat()
    server = (serve_metrics(settings.metrics.host, metrics_port, registry, watch.ready,
                            heartbeat.check) if metrics_port else None)
    worker = faust.Worker(app, loglevel=logging.getLogger().level or "INFO", quiet=True,
                          override_logging=False)
    tune_gc()
    # On the loop itself, not as an app task: faust starts those only once partitions are
    # assigned, and a worker waiting for its group is alive.
    worker.loop.create_task(heartbeat.run())
    try:
        worker.execute_from_commandline()
    finally:
        if server is not None:
            server.close()


def _run_beside(app: faust.App, name: str,
                run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """A stage's background work as a faust app task: cancelled when the worker stops (the
    work finishes what it has in flight first); any error but a cancel halts the worker."""

    async def task() -> None:
        stop = asyncio.Event()
        try:
            await run(stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        except Exception:
            _halt(f"{name} (background)")

    app.task(task)


def _watch_with(app: faust.App, watch: StageWatch) -> None:
    # mode types receivers as (sender, *args, signal=…); ours name the one argument it sends
    app.on_partitions_assigned.connect(watch.on_assigned)  # type: ignore[arg-type]
    app.on_partitions_revoked.connect(watch.on_revoked)  # type: ignore[arg-type]
    app.timer(WATCH_EVERY_S, name="stage-watch")(watch.refresh)


def _record(message: Any) -> Record:
    return Record(message.topic, message.partition, message.offset, message.key, message.value)


def _halt(name: str) -> None:
    """Stop the process at once without committing: the failed batch is consumed again."""
    log.critical("%s: stopping the worker; it resumes from its last commit", name, exc_info=True)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_HALTED)
