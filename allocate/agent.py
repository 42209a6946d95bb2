"""Allocate stage wiring: orders.accepted → reserve stock → orders.allocated | orders.held;
orders.status → release the reservation of an order held for review, cancelled, refunded or
marked a duplicate before it shipped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from allocate import metrics
from allocate.process import Allocation, allocate, needed_units
from allocate.projection import (
    ever_shipped,
    existing_shipments,
    load_candidates,
    release,
    reserve,
)
from runtime.projection import advance_status, lock_orders, record_events
from runtime.runner import Context, Emit
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.errors import TransientError
from schemas.events import (
    Event,
    Hold,
    OrderAccepted,
    OrderAllocated,
    OrderHeld,
    OrderStatusChanged,
    Shipment,
)
from schemas.order import OrderStatus
from schemas.topics import ACCEPTED, ALLOCATED, HELD, STATUS, TopicSpec

ALLOCATABLE = {OrderStatus.PAID.value, OrderStatus.BACKORDERED.value}
RELEASE_ON = frozenset({OrderStatus.REVIEW_HOLD, OrderStatus.CANCELLED, OrderStatus.REFUNDED,
                        OrderStatus.DUPLICATE})
ANY_TIME = datetime.min.replace(tzinfo=SHANGHAI)
CONTENTION_ATTEMPTS = 5


class AllocateStage:
    name = "allocate"
    sources: tuple[TopicSpec, ...] = (ACCEPTED, STATUS)

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = metrics.build(registry)

    def prepare(self, event: Event, ctx: Context) -> OrderAccepted | OrderStatusChanged:
        return cast(OrderAccepted | OrderStatusChanged, event)

    def project(
        self, conn: Connection, items: Sequence[OrderAccepted | OrderStatusChanged],
        ctx: Context,
    ) -> list[Emit]:
        rows = lock_orders(conn, (i.order.id if isinstance(i, OrderAccepted) else i.order_id
                                  for i in items))
        emits: list[Emit] = []
        for item in items:
            if isinstance(item, OrderStatusChanged):
                self._release(conn, item, ctx)
                continue
            emit = self._one(conn, item, rows.get(item.order.id), ctx)
            if emit is not None:
                emits.append(emit)
        return emits

    def _release(self, conn: Connection, change: OrderStatusChanged, ctx: Context) -> None:
        if change.status not in RELEASE_ON or ever_shipped(conn, change.order_id):
            return
        freed = release(conn, change.order_id)
        if freed:
            self.metrics.released.inc()
            _history(conn, change.order_id, f"released:{change.status.value}", change.status,
                     ctx, {"units": {f"{w}/{s}": q for (w, s), q in freed.items()},
                           "because": change.reason or change.status.value})

    def _one(
        self, conn: Connection, accepted: OrderAccepted, row: dict[str, Any] | None,
        ctx: Context,
    ) -> Emit | None:
        order = accepted.order
        shipments, rule, at = existing_shipments(conn, order.id)
        if shipments:
            return _allocated(accepted, shipments, rule, at)
        if row is None or row["status"] not in ALLOCATABLE:
            return None
        for _ in range(CONTENTION_ATTEMPTS):
            decision = allocate(order, load_candidates(conn, sorted(needed_units(order))))
            if isinstance(decision, Hold):
                return self._hold(conn, accepted, row, decision, ctx)
            if self._reserve(conn, accepted, row, decision, ctx):
                shipment = Shipment(warehouse=decision.warehouse, lines=decision.lines,
                                    reason=decision.reason)
                return _allocated(accepted, [shipment], decision.rule, ctx.now)
            self.metrics.contention_retries.inc()
        raise TransientError(f"{order.id}: stock kept changing under {CONTENTION_ATTEMPTS} tries")

    def _reserve(
        self, conn: Connection, accepted: OrderAccepted, row: dict[str, Any],
        decision: Allocation, ctx: Context,
    ) -> bool:
        savepoint = conn.begin_nested()
        if not reserve(conn, accepted.order, decision, ctx.now):
            savepoint.rollback()
            return False
        savepoint.commit()
        advance_status(conn, row, OrderStatus.ALLOCATED, ctx.now, since=ANY_TIME)
        _history(conn, accepted.order.id, "allocated", OrderStatus.ALLOCATED, ctx,
                 {"warehouse": decision.warehouse, "rule": decision.rule,
                  "reason": decision.reason})
        self.metrics.allocated.inc()
        return True

    def _hold(
        self, conn: Connection, accepted: OrderAccepted, row: dict[str, Any], hold: Hold,
        ctx: Context,
    ) -> Emit:
        hold_doc = hold.model_dump(mode="json")
        if row["status"] != OrderStatus.BACKORDERED.value:
            advance_status(conn, row, OrderStatus.BACKORDERED, ctx.now, since=ANY_TIME,
                           hold=hold_doc)
            _history(conn, accepted.order.id, f"held:{hold.reason}", OrderStatus.BACKORDERED,
                     ctx, hold_doc)
            self.metrics.held.labels(reason=hold.reason).inc()
        order = accepted.order.model_copy(update={"status": OrderStatus.BACKORDERED})
        held = OrderHeld(order=order, hold=hold, held_at=ctx.now)
        return Emit(HELD, accepted.order.id, held)


def _allocated(
    accepted: OrderAccepted, shipments: Sequence[Shipment], rule: str, at: datetime
) -> Emit:
    # The order carried downstream shows the status this stage gave it, not the intake status.
    order = accepted.order.model_copy(update={"status": OrderStatus.ALLOCATED})
    value = OrderAllocated(order=order, shipments=tuple(shipments), rule=rule, allocated_at=at)
    return Emit(ALLOCATED, accepted.order.id, value)


def _history(
    conn: Connection, order_id: str, key: str, status: OrderStatus, ctx: Context,
    data: dict[str, Any],
) -> None:
    record_events(conn, [{"order_id": order_id, "event_key": key, "kind": key.split(":")[0],
                          "stage": "allocate", "status": status.value, "occurred_at": ctx.now,
                          "data": data}])


def build(settings: Settings, registry: CollectorRegistry) -> AllocateStage:
    return AllocateStage(registry)
