"""Ingest wiring for files: read → envelopes → orders.raw (confluent-kafka), rejects → DLQ."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from ingest import csv, metrics
from ingest.files import Document
from ingest.process import Rejected, adapter_for, envelopes, raw_key
from ingest.projection import record_rejections
from runtime.db import in_transaction
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.errors import TransientError
from schemas.events import DeadLetter, RawOrderReceived
from schemas.order import Channel
from schemas.topics import DLQ, RAW

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    sent: int
    rejected: tuple[Rejected, ...]


def file_source(path: Path) -> str:
    """Stable identity of a file's content, so re-importing it repeats the delivery ids."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"file:{path.name}:{digest}"


def ingest_file(
    channel: str, path: Path, shop: str, *, settings: Settings, producer: Producer,
    engine: Engine, registry: CollectorRegistry | None = None,
) -> IngestReport:
    """Produce every order in the file to orders.raw; dead-letter what cannot be read."""
    adapter: Any = adapter_for(channel)  # fail before reading anything when the channel is wrong
    if channel == Channel.CSV.value:  # a merchant's export: read with that shop's column mapping
        adapter = csv.Adapter(settings.csv.mapping_for(shop))
    source = file_source(path)
    docs: Iterable[Document] = adapter.read(path)
    found = list(envelopes(channel, shop, docs, source=source, received_at=datetime.now(UTC),
                           adapter=adapter))
    good = [e for e in found if isinstance(e, RawOrderReceived)]
    bad = tuple(e for e in found if isinstance(e, Rejected))
    produce_all(producer, settings, [(RAW.full_name(settings.kafka.topic_prefix), raw_key(e),
                                      e.model_dump_json().encode()) for e in good])
    _dead_letter(bad, source, settings, producer, engine)
    m = metrics.build(registry or CollectorRegistry())
    m.received.labels(channel=channel, transport="file").inc(len(good))
    m.rejected.labels(channel=channel, transport="file").inc(len(bad))
    return IngestReport(sent=len(good), rejected=bad)


def produce_all(
    producer: Producer, settings: Settings, messages: Sequence[tuple[str, str, bytes]],
    timeout_s: float = 60.0,
) -> None:
    """Produce and wait until the broker acknowledged every message (acks=all)."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for topic, key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
    remaining = producer.flush(timeout_s)
    if errors or remaining:
        raise TransientError(
            f"{len(errors) + remaining} message(s) not acknowledged by the broker: "
            f"{errors[0] if errors else 'flush timed out'}"
        )


def _dead_letter(
    bad: Sequence[Rejected], source: str, settings: Settings, producer: Producer, engine: Engine
) -> None:
    if not bad:
        return
    now = datetime.now(SHANGHAI)
    letters = [
        DeadLetter(stage="ingest", topic=source, partition=0, offset=i, key=r.position,
                   error_class="InvalidInput", message=r.reason,
                   original=base64.b64encode(r.original).decode("ascii"), at=now)
        for i, r in enumerate(bad)
    ]
    for r in bad:
        log.warning("ingest: rejected %s of %s: %s", r.position, source, r.reason)
    in_transaction(engine, lambda conn: record_rejections(conn, letters, [r.original for r in bad]))
    produce_all(producer, settings, [(DLQ.full_name(settings.kafka.topic_prefix), d.key or "",
                                      d.model_dump_json().encode()) for d in letters])
