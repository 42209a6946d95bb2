"""The workload: demo Shopify webhooks as RawOrderReceived envelopes, their stock, and producing."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka import Message as Delivered
from sqlalchemy import Connection

from allocate.projection import add_warehouse, set_stock
from ingest import shopify
from ingest.agent import produce_all
from ingest.demo import demo_warehouse, generate_shopify_orders, required_stock
from ingest.process import raw_key
from runtime.db import in_transaction, make_engine
from runtime.kafka import make_producer
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.errors import OrderhubError
from schemas.events import RawOrderReceived
from schemas.order import Channel, canonical_id
from schemas.topics import RAW

SEED = 20261111
DEMO_START = datetime(2026, 11, 11, tzinfo=SHANGHAI)
Orders = Sequence[tuple[str, dict[str, Any]]]
Message = tuple[str, str, bytes]
CHUNK = 250


@contextmanager
def ingest_producer(bootstrap: str) -> Iterator[Producer]:
    """ingest's producer (idempotent, acks=all), closed before the broker goes away."""
    producer = make_producer(bootstrap, "orderhub-bench")
    try:
        yield producer
    finally:
        producer.close()


def demo_orders(n: int) -> list[tuple[str, dict[str, Any]]]:
    """n deterministic paid Shopify orders/create bodies as (shop, payload)."""
    return generate_shopify_orders(n, seed=SEED, start=DEMO_START)


def envelope(shop: str, payload: dict[str, Any], received_at: datetime) -> RawOrderReceived:
    """The envelope ingest's webhook receiver would write for this payload."""
    native = shopify.native_id(payload)
    return RawOrderReceived(
        channel=Channel.SHOPIFY.value, shop=shop, native_id=native, transport="webhook",
        received_at=received_at, delivery_id=f"bench:{shop}:{native}", payload=payload,
    )


def raw_messages(orders: Orders, topic: str, received_at: datetime) -> list[Message]:
    """(topic, key, value) of every order's envelope, serialized as ingest does."""
    return [
        (topic, raw_key(e), e.model_dump_json().encode())
        for e in (envelope(shop, payload, received_at) for shop, payload in orders)
    ]


def produce_orders(
    producer: Producer, settings: Settings, orders: Orders, chunk: int = 250
) -> dict[str, float]:
    """Produce to orders.raw, stamping received_at just before each chunk is produced.

    Returns each canonical order id with its received_at (Unix seconds) for latency figures.
    """
    topic = RAW.full_name(settings.kafka.topic_prefix)
    received: dict[str, float] = {}
    for start in range(0, len(orders), chunk):
        now = datetime.now(UTC)
        part = orders[start : start + chunk]
        produce_all(producer, settings, raw_messages(part, topic, now))
        for _shop, payload in part:
            received[canonical_id(Channel.SHOPIFY, shopify.native_id(payload))] = now.timestamp()
    return received


@dataclass(frozen=True)
class Paced:
    """What a paced produce did: each order's received_at (Unix seconds) by canonical order id
    and by Kafka key, and how well the pace was held."""

    by_order: dict[str, float]
    by_key: dict[str, float]
    produced_s: float
    acked_s: float
    max_late_s: float

    @property
    def rate(self) -> float:
        """Orders per second actually handed to the producer, first tick to last produce call."""
        return len(self.by_key) / self.produced_s if self.produced_s > 0 else float("inf")


def produce_paced(
    producer: Producer, topic: str, orders: Orders, rate: float | None, tick_s: float = 0.01,
    chunk: int = CHUNK,
) -> Paced:
    """Produce `orders` at `rate` orders/s (None: as fast as possible), in ticks of `tick_s`.

    Each tick sends what the schedule says is due by its end (at most `chunk` orders), stamping
    `received_at` just before, and does not wait for acknowledgements, so a slow round trip does
    not slow the pace; a late tick catches up. All are acknowledged (acks=all) before returning.
    """
    errors: list[KafkaError] = []
    by_order: dict[str, float] = {}
    by_key: dict[str, float] = {}
    started, sent, late, tick = time.perf_counter(), 0, 0.0, 0
    while sent < len(orders):
        tick += 1
        due = len(orders) if rate is None else min(len(orders), round(rate * tick_s * tick))
        if rate is not None and (wait := started + (tick - 1) * tick_s - time.perf_counter()) > 0:
            time.sleep(wait)
        late = max(late, time.perf_counter() - started - (tick - 1) * tick_s)
        part = orders[sent : min(due, sent + chunk)]
        _produce_tick(producer, topic, part, errors, by_order, by_key)
        sent += len(part)
    produced_s = time.perf_counter() - started
    remaining = producer.flush(60)
    if errors or remaining:
        raise OrderhubError(f"{len(errors) + remaining} order(s) not acknowledged: "
                            f"{errors[0] if errors else 'flush timed out'}")
    return Paced(by_order, by_key, produced_s, time.perf_counter() - started,
                 late if rate is not None else 0.0)


def _produce_tick(
    producer: Producer, topic: str, orders: Orders, errors: list[KafkaError],
    by_order: dict[str, float], by_key: dict[str, float],
) -> None:
    def on_delivery(err: KafkaError | None, _msg: Delivered) -> None:
        if err is not None:
            errors.append(err)

    now = datetime.now(UTC)
    for (_t, key, value), (_shop, payload) in zip(raw_messages(orders, topic, now), orders,
                                                   strict=True):
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        by_key[key] = now.timestamp()
        by_order[canonical_id(Channel.SHOPIFY, shopify.native_id(payload))] = now.timestamp()
    producer.poll(0)


def stock_up(database_url: str, orders: Orders) -> None:
    """The demo warehouse with twice the units the orders need, so allocate never holds."""
    wh = demo_warehouse()

    def work(conn: Connection) -> None:
        add_warehouse(conn, wh.code, wh.name, wh.province, wh.city, 10)
        for sku, qty in required_stock(orders).items():
            set_stock(conn, wh.code, sku, qty * 2)

    engine = make_engine(database_url)
    try:
        in_transaction(engine, work)
    finally:
        engine.dispose()
