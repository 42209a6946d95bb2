"""How allocation decisions reach Postgres: at once per order, or gathered for a run of orders.

A run is accepted orders back to back in one batch. Its stock rows are locked once
(`projection.lock_stock`) and every order is planned against that in-memory snapshot, which is
decremented as orders reserve; the run's writes are then a constant number of statements
instead of about ten per order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Connection, text

from allocate import lifecycle
from allocate.process import Candidate, Plan, needed_units
from allocate.projection import Warehouse, candidates, lock_stock, reserve_all
from runtime.projection import advance_status, json_rows, record_events
from schemas.order import Order, OrderStatus
from schemas.status import next_status


class Writer(Protocol):
    """Where an order's status change, history and approval go."""

    def advance(self, row: dict[str, Any], new: OrderStatus, *, since: datetime,
                hold: dict[str, Any] | None = None) -> None: ...

    def history(self, order_id: str, key: str, status: OrderStatus,
                data: dict[str, Any]) -> None: ...

    def open_approval(self, order_id: str, paid_cny: Decimal, reasons: list[str]) -> None: ...


class Immediate:
    """Each write as its own statement, now: the per-order path."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now

    def advance(self, row: dict[str, Any], new: OrderStatus, *, since: datetime,
                hold: dict[str, Any] | None = None) -> None:
        advance_status(self.conn, row, new, self.now, since=since, hold=hold)

    def history(self, order_id: str, key: str, status: OrderStatus,
                data: dict[str, Any]) -> None:
        record_events(self.conn, [history_row(order_id, key, status, self.now, data)])

    def open_approval(self, order_id: str, paid_cny: Decimal, reasons: list[str]) -> None:
        lifecycle.open_approval(self.conn, order_id, paid_cny, reasons, self.now)


class Gathered:
    """A run's writes, kept until `flush` writes each kind in one statement.

    Status changes pass the state machine here, as `advance_status` does, and update the locked
    row at once, so what the run reads next is what the per-order path would have read.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.reserved: list[tuple[Order, Plan]] = []
        self.moves: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.approvals: list[tuple[str, Decimal, list[str]]] = []

    def advance(self, row: dict[str, Any], new: OrderStatus, *, since: datetime,
                hold: dict[str, Any] | None = None) -> None:
        moved = next_status(OrderStatus(row["status"]), since, new, self.now)
        if moved is None:
            return
        self.moves.append({"id": row["id"], "s": moved.value, "hold": hold})
        row.update(status=moved.value, status_at=self.now, hold=hold)

    def history(self, order_id: str, key: str, status: OrderStatus,
                data: dict[str, Any]) -> None:
        self.events.append(history_row(order_id, key, status, self.now, data))

    def open_approval(self, order_id: str, paid_cny: Decimal, reasons: list[str]) -> None:
        self.approvals.append((order_id, paid_cny, reasons))

    def flush(self, conn: Connection) -> None:
        reserve_all(conn, self.reserved, self.now)
        for order_id, paid_cny, reasons in self.approvals:  # few: orders above the threshold
            lifecycle.open_approval(conn, order_id, paid_cny, reasons, self.now)
        if self.moves:  # the statement of advance_status, for every move at once
            conn.execute(
                text("UPDATE orders o SET status = v.s, status_at = :at, hold = v.hold, "
                     "recorded_at = now() FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                     "AS v(id text, s text, hold jsonb) WHERE o.id = v.id"),
                {"rows": json_rows(self.moves), "at": self.now},
            )
        record_events(conn, self.events)


class Snapshot:
    """The locked stock of a run's SKUs as candidates; `take` decrements what a plan reserved,
    so the next order is planned against what the earlier ones left."""

    def __init__(self, warehouses: Sequence[Warehouse], stock: dict[str, dict[str, int]]
                 ) -> None:
        self.stock = stock
        self.candidates: list[Candidate] = candidates(warehouses, stock)

    @classmethod
    def lock(cls, conn: Connection, warehouses: Sequence[Warehouse], orders: Iterable[Order]
             ) -> Snapshot:
        return cls(warehouses, lock_stock(conn, {sku for o in orders for sku in needed_units(o)}))

    def take(self, plan: Plan) -> None:
        for shipment in plan.shipments:
            for ln in shipment.lines:
                self.stock[shipment.warehouse][ln.sku] -= ln.quantity


def history_row(order_id: str, key: str, status: OrderStatus, at: datetime,
                data: dict[str, Any]) -> dict[str, Any]:
    """One order_events row written by this stage."""
    return {"order_id": order_id, "event_key": key, "kind": key.split(":")[0],
            "stage": "allocate", "status": status.value, "occurred_at": at, "data": data}
