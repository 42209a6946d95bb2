"""After the reservation: shipment confirmation, approvals and returns with QC, in Postgres.

Each function takes the batch's connection and is idempotent by natural key, so a replay changes
nothing: a shipment is confirmed once (allocations.shipped_at), an approval is opened once
(approvals PK), a return is recorded once (returns PK), and every stock change is one ledger row
(stock_movements.event_key).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, text

from schemas.errors import ConfigurationError
from schemas.events import InventoryChanged

Grade = Literal["A", "B", "C"]
GRADE_KIND: dict[str, Literal["returned_sellable", "returned_defective", "scrapped"]] = {
    "A": "returned_sellable", "B": "returned_defective", "C": "scrapped"}


def ledger(conn: Connection, key: str, warehouse: str, sku: str, kind: str, *,
           on_hand: int = 0, defective: int = 0, order_id: str | None = None,
           reason: str | None = None) -> bool:
    """One stock movement; False when this key was recorded before (a replay)."""
    return bool(conn.execute(
        text("INSERT INTO stock_movements (event_key, warehouse, sku, kind, on_hand_delta, "
             "defective_delta, order_id, reason) VALUES (:k, :w, :s, :kind, :oh, :d, :o, :r) "
             "ON CONFLICT (event_key) DO NOTHING"),
        {"k": key, "w": warehouse, "s": sku, "kind": kind, "oh": on_hand, "d": defective,
         "o": order_id, "r": reason},
    ).rowcount)


def _available(conn: Connection, warehouse: str, sku: str) -> int:
    return int(conn.execute(text("SELECT available FROM stock WHERE warehouse = :w AND sku = :s"),
                            {"w": warehouse, "s": sku}).scalar() or 0)


# -- shipment ---------------------------------------------------------------------------------

def confirm_shipment(conn: Connection, order_id: str, at: datetime, carrier: str | None,
                     waybill: str | None, source: str) -> list[InventoryChanged]:
    """The goods left: reserved units leave on-hand stock. Nothing happens twice."""
    rows = conn.execute(
        text("UPDATE allocations SET shipped_at = :at, carrier = :c, waybill = :wb "
             "WHERE order_id = :o AND shipped_at IS NULL RETURNING warehouse, sku, quantity"),
        {"at": at, "c": carrier, "wb": waybill, "o": order_id},
    ).all()
    units: dict[tuple[str, str], int] = defaultdict(int)
    for warehouse, sku, quantity in rows:
        units[(warehouse, sku)] += quantity
    events = []
    for (warehouse, sku), qty in sorted(units.items()):
        conn.execute(
            text("UPDATE stock SET on_hand = on_hand - :q, reserved = reserved - :q, "
                 "updated_at = now() WHERE warehouse = :w AND sku = :s"),
            {"q": qty, "w": warehouse, "s": sku},
        )
        ledger(conn, f"ship:{order_id}:{warehouse}:{sku}", warehouse, sku, "shipped",
               on_hand=-qty, order_id=order_id, reason=f"{carrier or ''} {waybill or ''}".strip())
        events.append(InventoryChanged(kind="shipped", warehouse=warehouse, sku=sku,
                                       available=_available(conn, warehouse, sku), delta=-qty,
                                       at=at, source=source))
    return events


def shipped_units(conn: Connection, order_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        text("SELECT warehouse, sku, sum(quantity) AS quantity FROM allocations "
             "WHERE order_id = :o AND shipped_at IS NOT NULL GROUP BY warehouse, sku "
             "ORDER BY warehouse, sku"), {"o": order_id}).mappings()
    return [dict(r) for r in rows]


# -- returns ----------------------------------------------------------------------------------

def request_return(conn: Connection, order_id: str, at: datetime) -> bool:
    """A refund or return after shipment: a return record for QC. False if none is due."""
    lines = shipped_units(conn, order_id)
    if not lines:
        return False
    return bool(conn.execute(
        text("INSERT INTO returns (order_id, lines, requested_at) VALUES "
             "(:o, CAST(:l AS jsonb), :at) ON CONFLICT (order_id) DO NOTHING"),
        {"o": order_id, "l": json.dumps(lines), "at": at},
    ).rowcount)


def receive_return(conn: Connection, order_id: str, at: datetime) -> str:
    item = _return(conn, order_id)
    if item["state"] == "received":
        return "already received"
    if item["state"] != "requested":
        raise ConfigurationError(f"return {order_id} is already {item['state']}")
    conn.execute(text("UPDATE returns SET state = 'received', received_at = :at "
                      "WHERE order_id = :o"), {"at": at, "o": order_id})
    return "received"


def grade_return(conn: Connection, order_id: str, grade: Grade, by: str, at: datetime,
                 source: str) -> list[InventoryChanged]:
    """QC: A back to sellable stock, B to defective stock, C scrapped — each a stock event."""
    item = _return(conn, order_id)
    if item["state"] == "graded":
        if item["grade"] == grade:
            return []
        raise ConfigurationError(f"return {order_id} was already graded {item['grade']}")
    if item["state"] != "received":
        raise ConfigurationError(f"return {order_id} has not been received yet; run "
                                 f"`orderhub returns receive {order_id}` first")
    conn.execute(text("UPDATE returns SET state = 'graded', grade = :g, graded_by = :by, "
                      "graded_at = :at WHERE order_id = :o"),
                 {"g": grade, "by": by, "at": at, "o": order_id})
    events = []
    for line in item["lines"]:
        warehouse, sku, qty = line["warehouse"], line["sku"], int(line["quantity"])
        if grade == "A":
            conn.execute(text("UPDATE stock SET on_hand = on_hand + :q, available = available "
                              "+ :q, updated_at = now() WHERE warehouse = :w AND sku = :s"),
                         {"q": qty, "w": warehouse, "s": sku})
            ledger(conn, f"return:{order_id}:{warehouse}:{sku}", warehouse, sku,
                   GRADE_KIND[grade], on_hand=qty, order_id=order_id, reason=f"QC A by {by}")
        elif grade == "B":
            conn.execute(text("UPDATE stock SET defective = defective + :q, updated_at = now() "
                              "WHERE warehouse = :w AND sku = :s"),
                         {"q": qty, "w": warehouse, "s": sku})
            ledger(conn, f"return:{order_id}:{warehouse}:{sku}", warehouse, sku,
                   GRADE_KIND[grade], defective=qty, order_id=order_id, reason=f"QC B by {by}")
        else:
            ledger(conn, f"return:{order_id}:{warehouse}:{sku}", warehouse, sku,
                   GRADE_KIND[grade], order_id=order_id, reason=f"QC C (scrapped) by {by}")
        events.append(InventoryChanged(kind=GRADE_KIND[grade], warehouse=warehouse, sku=sku,
                                       available=_available(conn, warehouse, sku),
                                       delta=qty if grade == "A" else 0, at=at, source=source))
    return events


def _return(conn: Connection, order_id: str) -> dict[str, Any]:
    item = conn.execute(text("SELECT * FROM returns WHERE order_id = :o FOR UPDATE"),
                        {"o": order_id}).mappings().first()
    if item is None:
        raise ConfigurationError(f"no return for {order_id}; see `orderhub returns list`")
    return dict(item)


def returns_list(conn: Connection, everything: bool) -> list[dict[str, Any]]:
    rows = conn.execute(text(
        "SELECT order_id, state, lines, requested_at, received_at, graded_at, graded_by, grade "
        "FROM returns WHERE (:all OR state <> 'graded') ORDER BY requested_at, order_id"),
        {"all": everything}).mappings()
    return [dict(r) for r in rows]


# -- approvals --------------------------------------------------------------------------------

def open_approval(conn: Connection, order_id: str, paid_cny: Decimal, reasons: list[str],
                  at: datetime) -> bool:
    return bool(conn.execute(
        text("INSERT INTO approvals (order_id, paid_cny, reasons, raised_at) VALUES "
             "(:o, :p, CAST(:r AS jsonb), :at) ON CONFLICT (order_id) DO NOTHING"),
        {"o": order_id, "p": paid_cny, "r": json.dumps(reasons), "at": at},
    ).rowcount)


def approval(conn: Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute(text("SELECT * FROM approvals WHERE order_id = :o FOR UPDATE"),
                       {"o": order_id}).mappings().first()
    return dict(row) if row else None


def decide_approval(conn: Connection, order_id: str, state: str, by: str, reason: str | None,
                    at: datetime) -> None:
    conn.execute(
        text("UPDATE approvals SET state = :s, decided_by = :by, decided_at = :at, "
             "decision_reason = :r WHERE order_id = :o AND state = 'open'"),
        {"s": state, "by": by, "at": at, "r": reason, "o": order_id},
    )


def approvals_list(conn: Connection, everything: bool) -> list[dict[str, Any]]:
    rows = conn.execute(text(
        "SELECT a.order_id, a.paid_cny, a.reasons, a.state, a.raised_at, a.decided_at, "
        "a.decided_by, a.decision_reason, o.channel, o.shop FROM approvals a "
        "LEFT JOIN orders o ON o.id = a.order_id WHERE (:all OR a.state = 'open') "
        "ORDER BY a.raised_at, a.order_id"), {"all": everything}).mappings()
    return [dict(r) for r in rows]


def first_time_address(conn: Connection, order_id: str, recipient: dict[str, Any] | None
                       ) -> bool:
    """No earlier order went to this exact address (as the channel sent it)."""
    if not recipient or not recipient.get("address"):
        return False
    seen = conn.execute(
        text("SELECT 1 FROM orders WHERE id <> :o AND document->'recipient'->>'address' = :a "
             "AND coalesce(document->'recipient'->>'city', '') = :c LIMIT 1"),
        {"o": order_id, "a": recipient["address"], "c": recipient.get("city") or ""},
    ).first()
    return seen is None
