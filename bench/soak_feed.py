"""The soak's workload: demo Shopify orders made one at a time, stock for all, paced producing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer
from sqlalchemy import Connection

from allocate.projection import add_warehouse, set_stock
from bench.workload import DEMO_START, SEED, raw_messages
from ingest.agent import produce_all
from ingest.demo import demo_catalogue, demo_warehouse, iter_shopify_orders
from runtime.db import in_transaction, make_engine
from runtime.settings import Settings
from schemas.topics import RAW

MAX_LINES = 3  # a demo order has 1-3 distinct SKUs, 1-3 units each
MAX_UNITS = 3


def iter_orders(n: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """The same `n` orders as `bench.workload.demo_orders(n)`, made one at a time: a list of
    1,000,000 would hold gigabytes in this process and muddy the machine the stages are
    measured on."""
    return iter_shopify_orders(n, seed=SEED, start=DEMO_START)


def stock_for(database_url: str, orders: int) -> None:
    """The demo warehouse with twice the most units `orders` demo orders could need of each SKU.

    `bench.workload.stock_up` sums the orders themselves, which needs them all in memory; an
    order holds a SKU at most once and at most 3 units of it, so 2 x 3 x orders always suffices.
    """
    wh = demo_warehouse()
    units = 2 * MAX_UNITS * orders

    def work(conn: Connection) -> None:
        add_warehouse(conn, wh.code, wh.name, wh.province, wh.city, 10)
        for sku in demo_catalogue():
            set_stock(conn, wh.code, sku.sku, units)

    engine = make_engine(database_url)
    try:
        in_transaction(engine, work)
    finally:
        engine.dispose()


class Feeder:
    """Produces orders to orders.raw in chunks, each chunk when the rate says it is due."""

    def __init__(
        self, producer: Producer, settings: Settings, orders: Iterator[tuple[str, dict[str, Any]]],
        rate: float, chunk: int,
    ) -> None:
        """`rate`: orders per second from `start()`; `chunk`: orders per produce call."""
        self.producer, self.settings, self.orders = producer, settings, orders
        self.rate, self.chunk = rate, chunk
        self.topic = RAW.full_name(settings.kafka.topic_prefix)
        self.sent = 0
        self.started = time.monotonic()
        self.max_late_s = 0.0

    def start(self) -> None:
        self.started, self.sent, self.max_late_s = time.monotonic(), 0, 0.0

    def next_due(self) -> float:
        """Monotonic time at which the next chunk is due."""
        return self.started + self.sent / self.rate

    def produce(self, limit: int) -> int:
        """Produce the next chunk (at most `limit` orders), acknowledged; returns its size."""
        # How far behind its schedule the feeder got: if this grows, --rate was not offered.
        self.max_late_s = max(self.max_late_s, time.monotonic() - self.next_due())
        part = list(itertools.islice(self.orders, min(self.chunk, limit)))
        if part:
            messages = raw_messages(part, self.topic, datetime.now(UTC))
            produce_all(self.producer, self.settings, messages)
            self.sent += len(part)
        return len(part)
