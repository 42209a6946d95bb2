"""Drive one stage through the real runner, broker and database, without faust's start-up cost."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from ingest.agent import produce_all
from runtime.db import make_engine
from runtime.kafka import make_producer
from runtime.metrics import build_stage_metrics
from runtime.runner import Emit, Record, StageRunner, now_in_shanghai
from runtime.settings import Settings
from runtime.stages import STAGES, group_id
from schemas.events import Event
from schemas.topics import TopicSpec


class KafkaIO:
    """Produce to and read back from the test's own topics."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka.bootstrap
        self.settings = settings
        self.bootstrap = settings.kafka.bootstrap
        self.producer = make_producer(self.bootstrap, "tests")

    def name(self, spec: TopicSpec) -> str:
        return spec.full_name(self.settings.kafka.topic_prefix)

    def produce(self, spec: TopicSpec, items: Sequence[tuple[str, Event | bytes]]) -> None:
        produce_all(self.producer, self.settings, [
            (self.name(spec), key, v if isinstance(v, bytes) else v.model_dump_json().encode())
            for key, v in items
        ])

    async def send(self, emits: Sequence[Emit]) -> None:
        self.produce_emits(emits)

    def produce_emits(self, emits: Sequence[Emit]) -> None:
        produce_all(self.producer, self.settings, [
            (self.name(e.topic), e.key, e.value.model_dump_json().encode()) for e in emits
        ])

    def read(self, spec: TopicSpec, expect: int, timeout: float = 15.0) -> list[Record]:
        """Every message of the topic from the beginning, once `expect` have arrived."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap,
                             "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False})
        name = self.name(spec)
        consumer.assign([TopicPartition(name, p, 0) for p in range(self.settings.kafka.partitions)])
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    records.append(Record(name, msg.partition(), msg.offset(), msg.key(),
                                          msg.value()))
                elif msg is None and len(records) >= expect:
                    break
        finally:
            consumer.close()
        return sorted(records, key=lambda r: (r.partition, r.offset))


def runner_for(name: str, settings: Settings, io: KafkaIO,
               clock: Callable[[], datetime] = now_in_shanghai) -> StageRunner[object]:
    registry = CollectorRegistry()
    assert settings.database.url
    return StageRunner(
        STAGES[name].build(settings, registry), engine=make_engine(settings.database.url),
        send=io.send, metrics=build_stage_metrics(name, registry), settings=settings,
        group=group_id(settings, name), clock=clock,
    )


def run_stage(name: str, settings: Settings, io: KafkaIO, records: Sequence[Record],
              clock: Callable[[], datetime] = now_in_shanghai) -> None:
    """One batch through the named stage's real runner (projection + produce); `clock` is the
    batch's time (ctx.now)."""
    runner = runner_for(name, settings, io, clock)
    try:
        asyncio.run(runner.run_batch(records))
    finally:
        runner.engine.dispose()
