"""Allocate stage wiring.

orders.accepted → route (allocate/process.py) → reserve in one transaction → orders.allocated, or
orders.held (backordered, awaiting approval with stock reserved). Accepted orders back to back in
a batch are planned together against their locked stock and written in bulk (allocate/bulk.py).
orders.status → approvals decided, shipments confirmed (reservation → on-hand decrement),
reservations given back when an order is held for review, cancelled, refunded or a duplicate
before it ships, returns recorded after it shipped. inventory.events → backordered orders
retried in paid_at order when stock arrives. Low-stock crossings go to inventory.events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeGuard

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, text

from allocate import geo, lifecycle, metrics
from allocate.bulk import Gathered, Immediate, Snapshot, Writer, history_row
from allocate.inventory import check_low
from allocate.process import Plan, Point, RoutingConfig, approval_reasons, needed_units, plan
from allocate.projection import (
    Warehouse,
    ever_shipped,
    existing_shipments,
    load_candidates,
    load_warehouses,
    release,
    reserve,
    shipments_of,
)
from runtime.projection import advance_status, lock_orders, order_document, record_events
from runtime.runner import Context, Emit
from runtime.settings import AllocateSettings, Settings
from schemas.base import SHANGHAI
from schemas.errors import TransientError
from schemas.events import (
    Event,
    Hold,
    InventoryChanged,
    OrderAccepted,
    OrderAllocated,
    OrderHeld,
    OrderStatusChanged,
    Shipment,
)
from schemas.order import Order, OrderStatus
from schemas.topics import ACCEPTED, ALLOCATED, HELD, INVENTORY, STATUS, TopicSpec

S = OrderStatus
ALLOCATABLE = {S.PAID.value, S.BACKORDERED.value}
RELEASE_ON = frozenset({S.REVIEW_HOLD, S.CANCELLED, S.REFUNDED, S.DUPLICATE})
SHIPPED = frozenset({S.SHIPPED, S.DELIVERED, S.COMPLETED})
RETURNS = frozenset({S.REFUNDED, S.RETURN_REQUESTED})
LEFT = SHIPPED | RETURNS  # accepted orders the per-order path takes (shipment, return)
RESTOCKS = frozenset({"stock_set", "stock_adjusted", "stock_received", "returned_sellable"})
APPROVER = "approval:"
ANY_TIME = datetime.min.replace(tzinfo=SHANGHAI)
CONTENTION_ATTEMPTS = 5
BACKORDERS_PER_EVENT = 200

Item = OrderAccepted | OrderStatusChanged | InventoryChanged


class AllocateStage:
    name = "allocate"
    sources: tuple[TopicSpec, ...] = (ACCEPTED, STATUS, INVENTORY)

    def __init__(self, settings: AllocateSettings, registry: CollectorRegistry, *,
                 batched: bool = True) -> None:
        """`batched=False` sends every item through the per-order path, which the bulk path
        must match emit for emit (tests and bench/allocate_batch.py compare the two)."""
        self.settings = settings
        self.routing = RoutingConfig.from_settings(settings)
        self.metrics = metrics.build(registry)
        self.batched = batched

    def prepare(self, event: Event, ctx: Context) -> Item:
        assert isinstance(event, OrderAccepted | OrderStatusChanged | InventoryChanged)
        return event

    def project(self, conn: Connection, items: Sequence[Item], ctx: Context) -> list[Emit]:
        rows = lock_orders(conn, [i.order.id if isinstance(i, OrderAccepted) else i.order_id
                                  for i in items if not isinstance(i, InventoryChanged)],
                           document=False)  # only approvals need it: `order_document`
        self.touched: set[tuple[str, str]] = set()  # stock rows this batch reserved from
        self.warehouses: list[Warehouse] | None = None  # read once, by the first run needing them
        emits: list[Emit] = []
        for part in _runs(items, self.batched):
            if isinstance(part, list):
                emits += self._accepted_run(conn, part, rows, ctx)
            else:
                emits += self._one(conn, part, rows, ctx)
        return emits + self._low_stock(conn, ctx)

    def _one(self, conn: Connection, item: Item, rows: dict[str, dict[str, Any]],
             ctx: Context) -> list[Emit]:
        if isinstance(item, OrderAccepted):
            return self._accepted(conn, item, rows.get(item.order.id), ctx)
        if isinstance(item, OrderStatusChanged):
            return self._status(conn, item, rows.get(item.order_id), ctx)
        if item.kind in RESTOCKS and item.delta >= 0:
            return self._backorders(conn, [item.sku], ctx)
        return []

    def _low_stock(self, conn: Connection, ctx: Context) -> list[Emit]:
        """One low_stock event per crossing below safety stock (allocate/inventory.check_low)."""
        by_warehouse: dict[str, set[str]] = {}
        for warehouse, sku in self.touched:
            by_warehouse.setdefault(warehouse, set()).add(sku)
        emits = []
        for warehouse, skus in sorted(by_warehouse.items()):
            for event in check_low(conn, warehouse, skus, at=ctx.now):
                self.metrics.low_stock.inc()
                emits.append(Emit(INVENTORY, event.sku, event))
        return emits

    def _warehouses(self, conn: Connection) -> list[Warehouse]:
        if self.warehouses is None:
            self.warehouses = load_warehouses(conn, geo.locate)
        return self.warehouses

    # -- orders.accepted, a run at a time ----------------------------------------------------

    def _accepted_run(self, conn: Connection, run: Sequence[OrderAccepted],
                      rows: dict[str, dict[str, Any]], ctx: Context) -> list[Emit]:
        """What `_accepted` does for each order of the run, in a constant number of statements:
        earlier allocations of all of them in one query, their SKUs' stock locked in another,
        each planned in memory against that, then every write of a kind in one statement."""
        earlier = shipments_of(conn, [a.order.id for a in run])
        fresh = [a.order for a in run
                 if a.order.id not in earlier and _allocatable(rows.get(a.order.id))]
        snapshot = Snapshot.lock(conn, self._warehouses(conn), fresh) if fresh else None
        writes = Gathered(ctx.now)
        emits: list[Emit] = []
        for a in run:
            order, row = a.order, rows.get(a.order.id)
            if order.id in earlier:  # a replay or an update: say again what was decided
                emits.append(self._again(conn, order, row, *earlier[order.id], ctx))
            elif snapshot is not None and _allocatable(row):
                emits.append(self._planned(conn, order, row, snapshot, writes, ctx))
        writes.flush(conn)
        return emits

    def _planned(self, conn: Connection, order: Order, row: dict[str, Any], snapshot: Snapshot,
                 writes: Gathered, ctx: Context) -> Emit:
        decision = plan(order, _destination(order), snapshot.candidates, self.routing,
                        geo.distance_km)
        if isinstance(decision, Hold):
            return self._hold(order, row, decision, writes, ctx)
        snapshot.take(decision)
        writes.reserved.append((order, decision))
        return self._reserved(conn, order, row, decision, writes, ctx)

    # -- orders.accepted, one at a time ------------------------------------------------------

    def _accepted(self, conn: Connection, accepted: OrderAccepted, row: dict[str, Any] | None,
                  ctx: Context) -> list[Emit]:
        order = accepted.order
        if order.status in SHIPPED:  # the channel says it left: confirm what was reserved
            return self._ship(conn, order.id, ctx.now, None, None, order.channel.value, ctx)
        if order.status in RETURNS and ever_shipped(conn, order.id):
            lifecycle.request_return(conn, order.id, ctx.now)
            return []
        shipments, rule, at = existing_shipments(conn, order.id)
        if shipments:  # a replay or an update: say again what was decided
            return [self._again(conn, order, row, shipments, rule, at, ctx)]
        if not _allocatable(row):
            return []
        emit = self._allocate(conn, order, row, ctx)
        return [emit] if emit is not None else []

    def _allocate(self, conn: Connection, order: Order, row: dict[str, Any], ctx: Context
                  ) -> Emit | None:
        destination = _destination(order)
        writes = Immediate(conn, ctx.now)
        for _ in range(CONTENTION_ATTEMPTS):
            candidates = load_candidates(conn, sorted(needed_units(order)), geo.locate)
            decision = plan(order, destination, candidates, self.routing, geo.distance_km)
            if isinstance(decision, Hold):
                return self._hold(order, row, decision, writes, ctx)
            savepoint = conn.begin_nested()
            if not reserve(conn, order, decision, ctx.now):
                savepoint.rollback()
                self.metrics.contention_retries.inc()
                continue
            savepoint.commit()
            return self._reserved(conn, order, row, decision, writes, ctx)
        raise TransientError(f"{order.id}: stock kept changing under {CONTENTION_ATTEMPTS} tries")

    # -- what either path decided ------------------------------------------------------------

    def _reserved(self, conn: Connection, order: Order, row: dict[str, Any], decision: Plan,
                  w: Writer, ctx: Context) -> Emit:
        explanation = decision.explanation()
        first_time = ("first_time_address" in self.settings.hold_rules
                      and lifecycle.first_time_address(
                          conn, order.id,
                          order.recipient.model_dump() if order.recipient else None))
        reasons = approval_reasons(order, self.settings.approval_threshold_cny,
                                   self.settings.hold_rules, first_time)
        self.touched.update(_touched(decision.shipments))
        if reasons:
            w.open_approval(order.id, order.paid_cny, reasons)
            hold = Hold(reason="awaiting_approval", details={"reasons": "; ".join(reasons)})
            w.advance(row, S.APPROVAL_HOLD, since=ANY_TIME, hold=hold.model_dump(mode="json"))
            w.history(order.id, "held:awaiting_approval", S.APPROVAL_HOLD,
                      {**explanation, "reasons": reasons})
            self.metrics.held.labels(reason="awaiting_approval").inc()
            held = order.model_copy(update={"status": S.APPROVAL_HOLD})
            return Emit(HELD, order.id, OrderHeld(order=held, hold=hold, held_at=ctx.now))
        w.advance(row, S.ALLOCATED, since=ANY_TIME)
        w.history(order.id, "allocated", S.ALLOCATED, explanation)
        self.metrics.allocated.inc()
        return _allocated(order, decision.shipments, decision.rule, ctx.now)

    def _again(self, conn: Connection, order: Order, row: dict[str, Any] | None,
               shipments: Sequence[Shipment], rule: str, at: datetime, ctx: Context) -> Emit:
        item = lifecycle.approval(conn, order.id)
        if item is not None and item["state"] == "open":
            hold = Hold(reason="awaiting_approval",
                        details={"reasons": "; ".join(item["reasons"])})
            held = order.model_copy(update={"status": S.APPROVAL_HOLD})
            return Emit(HELD, order.id, OrderHeld(order=held, hold=hold, held_at=ctx.now))
        return _allocated(order, shipments, rule, at)

    def _hold(self, order: Order, row: dict[str, Any], hold: Hold, w: Writer, ctx: Context
              ) -> Emit:
        hold_doc = hold.model_dump(mode="json")
        if row["status"] != S.BACKORDERED.value:
            w.advance(row, S.BACKORDERED, since=ANY_TIME, hold=hold_doc)
            w.history(order.id, f"held:{hold.reason}", S.BACKORDERED, hold_doc)
            self.metrics.held.labels(reason=hold.reason).inc()
        held = order.model_copy(update={"status": S.BACKORDERED})
        return Emit(HELD, order.id, OrderHeld(order=held, hold=hold, held_at=ctx.now))

    # -- orders.status -----------------------------------------------------------------------

    def _status(self, conn: Connection, change: OrderStatusChanged, row: dict[str, Any] | None,
                ctx: Context) -> list[Emit]:
        if change.source.startswith(APPROVER):
            return self._approval(conn, change, row, ctx)
        if change.status in SHIPPED:
            return self._ship(conn, change.order_id, change.at, change.carrier, change.waybill,
                              change.source, ctx)
        if change.status in RETURNS and ever_shipped(conn, change.order_id):
            lifecycle.request_return(conn, change.order_id, change.at)
            return []
        if change.status in RELEASE_ON and not ever_shipped(conn, change.order_id):
            return self._release(conn, change.order_id, change.status,
                                 change.reason or change.status.value, ctx)
        return []

    def _approval(self, conn: Connection, change: OrderStatusChanged,
                  row: dict[str, Any] | None, ctx: Context) -> list[Emit]:
        item = lifecycle.approval(conn, change.order_id)
        if item is None or row is None:
            return []
        by = change.source.removeprefix(APPROVER)
        order = Order.model_validate(order_document(conn, row))
        if change.status is S.ALLOCATED and item["state"] in ("open", "approved"):
            if item["state"] == "open":
                lifecycle.decide_approval(conn, order.id, "approved", by, change.reason,
                                          change.at)
                advance_status(conn, row, S.ALLOCATED, change.at, since=ANY_TIME)
                _history(conn, order.id, f"approved:{by}", S.ALLOCATED, ctx,
                         {"by": by, "reason": change.reason})
                self.metrics.allocated.inc()
            shipments, rule, at = existing_shipments(conn, order.id)
            return [_allocated(order, shipments, rule, at)] if shipments else []
        if change.status is S.CANCELLED and item["state"] == "open":
            lifecycle.decide_approval(conn, order.id, "rejected", by, change.reason, change.at)
            advance_status(conn, row, S.CANCELLED, change.at, since=ANY_TIME)
            _history(conn, order.id, f"rejected:{by}", S.CANCELLED, ctx,
                     {"by": by, "reason": change.reason})
            if ever_shipped(conn, order.id):  # too late: the goods left; a return will follow
                return []
            return self._release(conn, order.id, S.CANCELLED, f"rejected by {by}", ctx)
        return []

    def _ship(self, conn: Connection, order_id: str, at: datetime, carrier: str | None,
              waybill: str | None, source: str, ctx: Context) -> list[Emit]:
        events = lifecycle.confirm_shipment(conn, order_id, at, carrier, waybill, source)
        if events:
            _history(conn, order_id, "shipped", S.SHIPPED, ctx,
                     {"carrier": carrier, "waybill": waybill})
        return [Emit(INVENTORY, e.sku, e) for e in events]

    def _release(self, conn: Connection, order_id: str, status: OrderStatus, because: str,
                 ctx: Context) -> list[Emit]:
        freed = release(conn, order_id)
        if not freed:
            return []
        self.metrics.released.inc()
        _history(conn, order_id, f"released:{status.value}", status, ctx,
                 {"units": {f"{w}/{s}": q for (w, s), q in freed.items()}, "because": because})
        # Freed units may be what a backordered order waits for.
        return self._backorders(conn, sorted({sku for _, sku in freed}), ctx)

    # -- inventory.events --------------------------------------------------------------------

    def _backorders(self, conn: Connection, skus: Sequence[str], ctx: Context) -> list[Emit]:
        """Retry backordered orders that need these SKUs, oldest payment first."""
        waiting = conn.execute(
            text("SELECT DISTINCT o.id, o.paid_at FROM orders o JOIN order_lines l "
                 "ON l.order_id = o.id WHERE o.status = 'backordered' AND l.sku = ANY(:s) "
                 "ORDER BY o.paid_at NULLS LAST, o.id LIMIT :n"),
            {"s": list(skus), "n": BACKORDERS_PER_EVENT},
        ).all()
        rows = lock_orders(conn, [w.id for w in waiting])
        emits: list[Emit] = []
        for w in waiting:
            row = rows.get(w.id)
            if row is None or row["status"] != S.BACKORDERED.value:
                continue
            order = Order.model_validate(row["document"])
            emit = self._allocate(conn, order, row, ctx)
            if emit is not None and emit.topic is not HELD:
                emits.append(emit)
                self.metrics.backorders_released.inc()
        return emits


def _runs(items: Sequence[Item], batched: bool) -> Iterator[list[OrderAccepted] | Item]:
    """The items in their order: accepted orders back to back as one run (a list), every other
    item alone. A run ends before an order it already holds, so that order's items keep their
    order; an order the channel reports shipped or returned goes alone (a rare path)."""
    run: list[OrderAccepted] = []
    ids: set[str] = set()
    for item in items:
        if batched and isinstance(item, OrderAccepted) and item.order.status not in LEFT:
            if item.order.id in ids:
                yield run
                run, ids = [], set()
            run.append(item)
            ids.add(item.order.id)
            continue
        if run:
            yield run
            run, ids = [], set()
        yield item
    if run:
        yield run


def _allocatable(row: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    return row is not None and row["status"] in ALLOCATABLE


def _destination(order: Order) -> Point | None:
    r = order.recipient
    return geo.locate(r.country, r.province, r.city) if r else None


def _touched(shipments: Iterable[Shipment]) -> list[tuple[str, str]]:
    return [(s.warehouse, ln.sku) for s in shipments for ln in s.lines]


def _allocated(order: Order, shipments: Sequence[Shipment], rule: str, at: datetime) -> Emit:
    # The order carried downstream shows the status this stage gave it, not the intake status.
    allocated = order.model_copy(update={"status": S.ALLOCATED})
    value = OrderAllocated(order=allocated, shipments=tuple(shipments), rule=rule,
                           allocated_at=at)
    return Emit(ALLOCATED, order.id, value)


def _history(conn: Connection, order_id: str, key: str, status: OrderStatus, ctx: Context,
             data: dict[str, Any]) -> None:
    record_events(conn, [history_row(order_id, key, status, ctx.now, data)])


def build(settings: Settings, registry: CollectorRegistry) -> AllocateStage:
    return AllocateStage(settings.allocate, registry)

