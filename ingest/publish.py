"""Ingest's way out for pushes and polls: envelopes to orders.raw, status changes to orders.status,
pushed ids to fetch_requests, refusals to orders.dlq — each acknowledged before anything is
recorded as done, so a crash in between means a redelivery, never a loss.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import Producer
from sqlalchemy import Connection, Engine, text

from ingest.agent import produce_all
from ingest.metrics import IngestMetrics
from ingest.process import adapter_for, raw_key
from ingest.projection import record_rejections
from ingest.push import Delivery
from runtime.db import in_transaction
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.events import DeadLetter, RawOrderReceived
from schemas.topics import DLQ, RAW, STATUS

log = logging.getLogger(__name__)
Transport = Literal["webhook", "poll", "file"]


@dataclass(frozen=True)
class Outcome:
    """What one push or page produced."""

    duplicate: bool = False
    orders: int = 0
    status_changes: int = 0
    fetches: int = 0
    rejected: int = 0


class Publisher:
    """Shared by the webhook receiver, the pollers and the message sources (thread-safe calls)."""

    def __init__(
        self, settings: Settings, producer: Producer, engine: Engine, metrics: IngestMetrics,
        ack_timeout_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.engine = engine
        self.metrics = metrics
        self.ack_timeout_s = ack_timeout_s
        prefix = settings.kafka.topic_prefix
        self.raw_topic = RAW.full_name(prefix)
        self.status_topic = STATUS.full_name(prefix)
        self.dlq_topic = DLQ.full_name(prefix)

    # -- polls -------------------------------------------------------------------------------

    def orders(
        self, channel: str, shop: str, transport: Transport,
        items: Sequence[tuple[str, Mapping[str, Any]]],
    ) -> Outcome:
        """Produce one envelope per (delivery id, native payload); refuse payloads without an id."""
        good, bad = self._envelopes(channel, shop, transport, items)
        produce_all(self.producer, self.settings,
                    [(self.raw_topic, raw_key(e), e.model_dump_json().encode()) for e in good],
                    self.ack_timeout_s)
        for delivery_id, reason, payload in bad:
            self.reject(channel, transport, delivery_id, reason, _json_bytes(payload))
        self.metrics.received.labels(channel=channel, transport=transport).inc(len(good))
        return Outcome(orders=len(good), rejected=len(bad))

    # -- pushes ------------------------------------------------------------------------------

    def push(self, channel: str, transport: Transport, delivery: Delivery) -> Outcome:
        """Produce a verified push once: a delivery id already recorded produces nothing.

        A refused frame (`delivery.invalid`) is dead-lettered instead. Either way the delivery id
        is recorded only after the broker acknowledged: a crash in between sends it again (the
        dead letter keeps one row), never not at all.
        """
        if in_transaction(self.engine, lambda c: _seen(c, channel, delivery.delivery_id)):
            return Outcome(duplicate=True)
        if delivery.invalid is not None:
            self.reject(channel, transport, delivery.delivery_id, delivery.invalid,
                        delivery.original)
            empty = Delivery(delivery.delivery_id, delivery.shop)
            in_transaction(self.engine, lambda c: _record_push(c, channel, transport, empty, 0))
            return Outcome(rejected=1)
        items = [(_item_id(delivery.delivery_id, i, len(delivery.orders)), payload)
                 for i, payload in enumerate(delivery.orders)]
        good, bad = self._envelopes(channel, delivery.shop, transport, items)
        messages = [(self.raw_topic, raw_key(e), e.model_dump_json().encode()) for e in good]
        messages += [(self.status_topic, s.order_id, s.model_dump_json().encode())
                     for s in delivery.status_changes]
        produce_all(self.producer, self.settings, messages, self.ack_timeout_s)
        for delivery_id, reason, payload in bad:
            self.reject(channel, transport, delivery_id, reason, _json_bytes(payload))
        in_transaction(self.engine, lambda c: _record_push(c, channel, transport, delivery,
                                                            len(good)))
        self.metrics.received.labels(channel=channel, transport=transport).inc(len(good))
        return Outcome(orders=len(good), status_changes=len(delivery.status_changes),
                       fetches=len(delivery.fetch), rejected=len(bad))

    # -- refusals ----------------------------------------------------------------------------

    def reject(self, channel: str, transport: Transport, source: str, reason: str,
               original: bytes) -> None:
        """Dead-letter one input ingest cannot use; the same input twice is one dead letter."""
        topic = f"{transport}:{channel}"
        offset = int.from_bytes(hashlib.sha256(source.encode() + b"\0" + original).digest()[:8],
                                "big") >> 1
        letter = DeadLetter(
            stage="ingest", topic=topic, partition=0, offset=offset, key=source,
            error_class="InvalidInput", message=reason,
            original=base64.b64encode(original).decode("ascii"), at=datetime.now(SHANGHAI))
        log.warning("ingest: rejected %s from %s: %s", source, topic, reason)
        in_transaction(self.engine, lambda c: record_rejections(c, [letter], [original]))
        produce_all(self.producer, self.settings,
                    [(self.dlq_topic, source, letter.model_dump_json().encode())],
                    self.ack_timeout_s)
        self.metrics.rejected.labels(channel=channel, transport=transport).inc()

    def _envelopes(
        self, channel: str, shop: str, transport: Transport,
        items: Sequence[tuple[str, Mapping[str, Any]]],
    ) -> tuple[list[RawOrderReceived], list[tuple[str, str, Mapping[str, Any]]]]:
        adapter = adapter_for(channel)
        now = datetime.now(UTC)
        good: list[RawOrderReceived] = []
        bad: list[tuple[str, str, Mapping[str, Any]]] = []
        for delivery_id, payload in items:
            try:
                good.append(RawOrderReceived(
                    channel=channel, shop=shop, native_id=adapter.native_id(payload),
                    transport=transport, received_at=now, delivery_id=delivery_id,
                    payload=dict(payload)))
            except (InvalidInput, KeyError, TypeError) as e:
                bad.append((delivery_id, f"no usable order id: {e}", payload))
        return good, bad


def _item_id(delivery_id: str, index: int, count: int) -> str:
    return delivery_id if count == 1 else f"{delivery_id}:{index}"


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    import json

    return json.dumps(payload, ensure_ascii=False, default=str).encode()


def _seen(conn: Connection, channel: str, delivery_id: str) -> bool:
    return conn.execute(
        text("SELECT 1 FROM push_deliveries WHERE channel = :c AND delivery_id = :d"),
        {"c": channel, "d": delivery_id},
    ).first() is not None


def _record_push(conn: Connection, channel: str, transport: str, delivery: Delivery,
                 orders: int) -> None:
    conn.execute(
        text("INSERT INTO push_deliveries (channel, delivery_id, shop, transport, orders, "
             "status_changes) VALUES (:c, :d, :s, :t, :o, :n) ON CONFLICT DO NOTHING"),
        {"c": channel, "d": delivery.delivery_id, "s": delivery.shop, "t": transport,
         "o": orders, "n": len(delivery.status_changes)},
    )
    if delivery.fetch:
        conn.execute(
            text("INSERT INTO fetch_requests (channel, shop, native_id) VALUES (:c, :s, :n) "
                 "ON CONFLICT (channel, shop, native_id) DO UPDATE SET requested_at = now()"),
            [{"c": channel, "s": delivery.shop, "n": n} for n in dict.fromkeys(delivery.fetch)],
        )
