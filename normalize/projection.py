"""Normalize's projection: the orders and order_lines rows, newest channel version wins."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from runtime.projection import advance_status, lock_orders, record_events
from schemas.events import OrderNormalized, OrderStatusChanged
from schemas.order import Order

INSERT_ORDER = text(
    "INSERT INTO orders (id, channel, shop, native_id, native_status, status, status_at, "
    "created_at, paid_at, updated_at, currency, paid_amount, paid_cny, document) VALUES "
    "(:id, :channel, :shop, :native_id, :native_status, :status, :updated_at, :created_at, "
    ":paid_at, :updated_at, :currency, :paid_amount, :paid_cny, CAST(:document AS jsonb)) "
    "ON CONFLICT (id) DO NOTHING"
)
UPDATE_ORDER = text(
    "UPDATE orders SET native_status = :native_status, paid_at = :paid_at, "
    "updated_at = :updated_at, currency = :currency, paid_amount = :paid_amount, "
    "paid_cny = :paid_cny, document = CAST(:document AS jsonb), recorded_at = now() "
    "WHERE id = :id"
)
INSERT_LINE = text(
    "INSERT INTO order_lines (order_id, line_no, sku, channel_sku_id, title, quantity, "
    "unit_price, line_total) VALUES (:order_id, :line_no, :sku, :channel_sku_id, :title, "
    ":quantity, :unit_price, :line_total)"
)


def digest(order: Order) -> str:
    """A stable fingerprint of one version of an order (same payload → same digest)."""
    return hashlib.sha256(order.model_dump_json().encode()).hexdigest()


def write_orders(conn: Connection, batch: Sequence[OrderNormalized]) -> None:
    """Insert new orders, apply newer versions of known ones, and record each version seen."""
    current = lock_orders(conn, (n.order.id for n in batch))
    fresh = [n.order for n in batch if n.order.id not in current]
    _insert(conn, _first_versions(fresh))
    current.update(lock_orders(conn, (o.id for o in fresh)))
    for n in batch:
        _apply_if_newer(conn, current[n.order.id], n.order)
    record_events(conn, (_event(n) for n in batch))


def _first_versions(orders: list[Order]) -> list[Order]:
    first: dict[str, Order] = {}
    for o in orders:
        first.setdefault(o.id, o)
    return list(first.values())


def _insert(conn: Connection, orders: list[Order]) -> None:
    if not orders:
        return
    conn.execute(INSERT_ORDER, [_row(o) for o in orders])
    _replace_lines(conn, orders)


def _apply_if_newer(conn: Connection, row: dict[str, Any], order: Order) -> None:
    if order.updated_at <= row["updated_at"]:
        return
    advance_status(conn, row, order.status, order.updated_at, since=row["updated_at"],
                   hold=row["hold"])
    conn.execute(UPDATE_ORDER, _row(order))
    conn.execute(text("DELETE FROM order_lines WHERE order_id = :id"), {"id": order.id})
    _replace_lines(conn, [order])
    row.update(updated_at=order.updated_at)


def _replace_lines(conn: Connection, orders: list[Order]) -> None:
    conn.execute(
        INSERT_LINE,
        [
            {"order_id": o.id, "line_no": i, **line.model_dump(mode="json")}
            for o in orders
            for i, line in enumerate(o.lines, start=1)
        ],
    )


def _row(order: Order) -> dict[str, Any]:
    doc = order.model_dump(mode="json")
    return {
        "id": order.id, "channel": order.channel.value, "shop": order.shop,
        "native_id": order.native_id, "native_status": order.native_status,
        "status": order.status.value, "created_at": order.created_at, "paid_at": order.paid_at,
        "updated_at": order.updated_at, "currency": order.currency,
        "paid_amount": order.paid_amount, "paid_cny": order.paid_cny,
        "document": json.dumps(doc, ensure_ascii=False),
    }


def _event(n: OrderNormalized) -> dict[str, Any]:
    return {
        "order_id": n.order.id, "event_key": f"normalized:{digest(n.order)}",
        "kind": "normalized", "stage": "normalize", "status": n.order.status.value,
        "occurred_at": n.order.updated_at,
        "data": {"delivery_id": n.delivery_id, "native_status": n.order.native_status},
    }


def apply_status_changes(
    conn: Connection, changes: Sequence[OrderStatusChanged]
) -> tuple[list[OrderStatusChanged], list[OrderStatusChanged]]:
    """Apply channel-reported status changes to known orders through the state machine.

    Returns (applied, unknown): a change for an order not projected yet is not applied — the
    full order follows (the receiver queued its fetch, or the next poll window carries it) and
    its own status then decides. A change older than the order's last status change, or one the
    state machine refuses, is recorded in the history but moves nothing.
    """
    current = lock_orders(conn, (c.order_id for c in changes))
    applied: list[OrderStatusChanged] = []
    unknown: list[OrderStatusChanged] = []
    for change in sorted(changes, key=lambda c: c.at):
        row = current.get(change.order_id)
        if row is None:
            unknown.append(change)
            continue
        if advance_status(conn, row, change.status, change.at, since=row["status_at"],
                          hold=row["hold"]):
            applied.append(change)
    record_events(conn, (_status_event(c) for c in changes if c.order_id in current))
    return applied, unknown


def _status_event(change: OrderStatusChanged) -> dict[str, Any]:
    return {
        "order_id": change.order_id,
        "event_key": f"status:{change.source}:{change.status.value}:{change.at.isoformat()}",
        "kind": "status_changed", "stage": "normalize", "status": change.status.value,
        "occurred_at": change.at,
        "data": {"source": change.source, "reason": change.reason, "carrier": change.carrier,
                 "waybill": change.waybill},
    }
