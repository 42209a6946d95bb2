"""Normalize's projection: the orders and order_lines rows, newest channel version wins."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from runtime.projection import advance_status, json_rows, lock_orders, record_events
from schemas.events import OrderNormalized, OrderStatusChanged
from schemas.order import Order

INSERT_ORDERS = text(
    "INSERT INTO orders (id, channel, shop, native_id, native_status, status, status_at, "
    "created_at, paid_at, updated_at, currency, paid_amount, paid_cny, document) "
    "SELECT id, channel, shop, native_id, native_status, status, updated_at, created_at, "
    "paid_at, updated_at, currency, paid_amount, paid_cny, document "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(id text, channel text, shop text, "
    "native_id text, native_status text, status text, created_at timestamptz, "
    "paid_at timestamptz, updated_at timestamptz, currency text, paid_amount numeric, "
    "paid_cny numeric, document jsonb) "
    "ON CONFLICT (id) DO NOTHING RETURNING id, status, status_at, updated_at, hold"
)
"""The batch's new orders in one statement: the rows go as one JSON array, which psycopg sends
as it is, where an array of documents costs it an escape pass over every character."""
UPDATE_ORDER = text(
    "UPDATE orders SET native_status = :native_status, paid_at = :paid_at, "
    "updated_at = :updated_at, currency = :currency, paid_amount = :paid_amount, "
    "paid_cny = :paid_cny, document = CAST(:document AS jsonb), recorded_at = now() "
    "WHERE id = :id"
)
INSERT_LINES = text(
    "INSERT INTO order_lines (order_id, line_no, sku, channel_sku_id, title, quantity, "
    "unit_price, line_total) SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
    "AS t(order_id text, line_no integer, sku text, channel_sku_id text, title text, "
    "quantity integer, unit_price numeric, line_total numeric)"
)


def digest(order: Order) -> str:
    """A stable fingerprint of one version of an order (same payload → same digest)."""
    return hashlib.sha256(order.model_dump_json().encode()).hexdigest()


def write_orders(conn: Connection, batch: Sequence[OrderNormalized]) -> None:
    """Insert new orders, apply newer versions of known ones, and record each version seen.

    Each table gets one statement per batch, its columns sent as arrays (`unnest`)."""
    current = lock_orders(conn, (n.order.id for n in batch), document=False)
    fresh = [n.order for n in batch if n.order.id not in current]
    inserted = _insert(conn, _first_versions(fresh))
    current.update(inserted)
    missed = {o.id for o in fresh} - current.keys()
    if missed:  # inserted meanwhile by another transaction (whose lock we now wait for)
        current.update(lock_orders(conn, missed, document=False))
    for n in batch:
        _apply_if_newer(conn, current[n.order.id], n.order)
    record_events(conn, (_event(n) for n in batch))


def _first_versions(orders: list[Order]) -> list[Order]:
    first: dict[str, Order] = {}
    for o in orders:
        first.setdefault(o.id, o)
    return list(first.values())


def _insert(conn: Connection, orders: list[Order]) -> dict[str, dict[str, Any]]:
    """Insert orders not stored yet; returns the rows this transaction inserted (locked)."""
    if not orders:
        return {}
    rows = "[" + ",".join(_json_row(o) for o in orders) + "]"
    inserted = conn.execute(INSERT_ORDERS, {"rows": rows})
    _replace_lines(conn, orders)
    return {r["id"]: dict(r) for r in inserted.mappings()}


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
    rows = json_rows({"order_id": o.id, "line_no": i, **line.model_dump()}
                     for o in orders for i, line in enumerate(o.lines, start=1))
    if rows is not None:
        conn.execute(INSERT_LINES, {"rows": rows})


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


def _json_row(order: Order) -> str:
    """The order's row for INSERT_ORDERS: its columns, with the whole document inside."""
    doc = order.model_dump_json()
    head = json.dumps({
        "id": order.id, "channel": order.channel.value, "shop": order.shop,
        "native_id": order.native_id, "native_status": order.native_status,
        "status": order.status.value, "created_at": order.created_at.isoformat(),
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
        "updated_at": order.updated_at.isoformat(), "currency": order.currency,
        "paid_amount": str(order.paid_amount), "paid_cny": str(order.paid_cny),
    }, ensure_ascii=False)
    return f'{head[:-1]}, "document": {doc}}}'


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
    current = lock_orders(conn, (c.order_id for c in changes), document=False)
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
