"""Normalize stage wiring: orders.raw → canonical Order → orders.normalized + orders table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from normalize import metrics
from normalize.process import normalize
from normalize.projection import write_orders
from normalize.rates import RateTable
from runtime.runner import Context, Emit
from runtime.settings import Settings
from schemas.events import Event, OrderNormalized, RawOrderReceived
from schemas.topics import NORMALIZED, RAW, TopicSpec


class NormalizeStage:
    name = "normalize"
    sources: tuple[TopicSpec, ...] = (RAW,)

    def __init__(self, rates: RateTable, registry: CollectorRegistry) -> None:
        self.rates = rates
        self.metrics = metrics.build(registry)

    def prepare(self, event: Event, ctx: Context) -> OrderNormalized:
        raw = cast(RawOrderReceived, event)
        order = normalize(raw, self.rates)
        return OrderNormalized(order=order, delivery_id=raw.delivery_id,
                               received_at=raw.received_at)

    def project(
        self, conn: Connection, items: Sequence[OrderNormalized], ctx: Context
    ) -> list[Emit]:
        write_orders(conn, items)
        for n in items:
            self.metrics.mapped.labels(channel=n.order.channel.value).inc()
        return [Emit(NORMALIZED, n.order.id, n) for n in items]


def build(settings: Settings, registry: CollectorRegistry) -> NormalizeStage:
    return NormalizeStage(RateTable.from_mapping(settings.rates), registry)
