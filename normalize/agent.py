"""Normalize stage wiring: orders.raw → canonical Order → orders.normalized + orders table;
orders.status → the same orders rows, through the state machine (nothing emitted: the stages
that act on a status change read orders.status themselves)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from normalize import metrics
from normalize.csv import CsvMapper
from normalize.process import MAPPERS, Mapper, normalize, with_csv
from normalize.projection import apply_status_changes, write_orders
from normalize.rates import RateTable
from runtime.runner import Context, Emit
from runtime.settings import Settings
from schemas.events import Event, OrderNormalized, OrderStatusChanged, RawOrderReceived
from schemas.order import Channel
from schemas.topics import NORMALIZED, RAW, STATUS, TopicSpec


class NormalizeStage:
    name = "normalize"
    sources: tuple[TopicSpec, ...] = (RAW, STATUS)

    def __init__(
        self, rates: RateTable, registry: CollectorRegistry,
        mappers: Mapping[Channel, Mapper] = MAPPERS,
    ) -> None:
        self.rates = rates
        self.mappers = mappers
        self.metrics = metrics.build(registry)

    def prepare(self, event: Event, ctx: Context) -> OrderNormalized | OrderStatusChanged:
        if isinstance(event, OrderStatusChanged):
            return event
        raw = cast(RawOrderReceived, event)
        order = normalize(raw, self.rates, self.mappers)
        return OrderNormalized(order=order, delivery_id=raw.delivery_id,
                               received_at=raw.received_at)

    def project(
        self, conn: Connection, items: Sequence[OrderNormalized | OrderStatusChanged],
        ctx: Context,
    ) -> list[Emit]:
        normalized = [i for i in items if isinstance(i, OrderNormalized)]
        changes = [i for i in items if isinstance(i, OrderStatusChanged)]
        write_orders(conn, normalized)
        for n in normalized:
            self.metrics.mapped.labels(channel=n.order.channel.value).inc()
        if changes:  # after the batch's orders, so a change right behind its order applies
            applied, unknown = apply_status_changes(conn, changes)
            counts = {"applied": len(applied), "unknown_order": len(unknown),
                      "refused": len(changes) - len(applied) - len(unknown)}
            for outcome, count in counts.items():
                self.metrics.status_changes.labels(outcome=outcome).inc(count)
        return [Emit(NORMALIZED, n.order.id, n) for n in normalized]


def build(settings: Settings, registry: CollectorRegistry) -> NormalizeStage:
    mappers = with_csv(CsvMapper(settings.csv.mapping_for))
    return NormalizeStage(RateTable.from_mapping(settings.rates), registry, mappers)
