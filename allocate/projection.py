"""Allocate's projection: warehouses, stock reservations by conditional decrement, allocations."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from allocate.process import Candidate, Plan, Point
from schemas.errors import ConfigurationError
from schemas.events import Shipment, ShipmentLine
from schemas.order import Order


def load_candidates(
    conn: Connection, skus: Sequence[str], locate: Callable[[str | None, str | None, str | None],
                                                            Point | None],
) -> list[Candidate]:
    """Active warehouses with their available units of the given SKUs and their location
    (the configured coordinates, else the centre of their city)."""
    warehouses = conn.execute(
        text("SELECT code, priority, province, city, latitude, longitude FROM warehouses "
             "WHERE active ORDER BY priority, code")
    ).mappings().all()
    stock: dict[str, dict[str, int]] = {w["code"]: {} for w in warehouses}
    rows = conn.execute(
        text("SELECT warehouse, sku, available FROM stock WHERE sku = ANY(:skus)"),
        {"skus": list(skus)},
    )
    for warehouse, sku, available in rows:
        if warehouse in stock:
            stock[warehouse][sku] = available
    return [
        Candidate(code=w["code"], priority=w["priority"], available=stock[w["code"]],
                  location=((float(w["latitude"]), float(w["longitude"]))
                            if w["latitude"] is not None and w["longitude"] is not None
                            else locate("CN", w["province"], w["city"])))
        for w in warehouses
    ]


def reserve(conn: Connection, order: Order, plan: Plan, now: datetime) -> bool:
    """Reserve the plan's units; False (the caller rolls back its savepoint) if stock ran out.

    Decrements run in (warehouse, SKU) order so concurrent allocators take row locks in the same
    order, and each succeeds only while `available >= qty` (the CHECK constraint is the
    backstop). The allocations key (order, line, warehouse) makes a replay reserve nothing twice.
    """
    units: dict[tuple[str, str], int] = defaultdict(int)
    for shipment in plan.shipments:
        for ln in shipment.lines:
            units[(shipment.warehouse, ln.sku)] += ln.quantity
    for (warehouse, sku), qty in sorted(units.items()):
        done = conn.execute(
            text(
                "UPDATE stock SET available = available - :q, reserved = reserved + :q, "
                "updated_at = now() WHERE warehouse = :w AND sku = :s AND available >= :q"
            ),
            {"q": qty, "w": warehouse, "s": sku},
        )
        if done.rowcount != 1:
            return False
    conn.execute(
        text(
            "INSERT INTO allocations (order_id, line_no, warehouse, sku, quantity, rule, reason, "
            "reserved_at) VALUES (:o, :n, :w, :s, :q, :rule, :reason, :at)"
        ),
        [
            {"o": order.id, "n": ln.line_no, "w": shipment.warehouse, "s": ln.sku,
             "q": ln.quantity, "rule": plan.rule, "reason": shipment.reason, "at": now}
            for shipment in plan.shipments for ln in shipment.lines
        ],
    )
    conn.execute(
        text("INSERT INTO allocation_decisions (order_id, rule, reason, candidates, decided_at) "
             "VALUES (:o, :rule, :reason, CAST(:c AS jsonb), :at) ON CONFLICT (order_id) DO "
             "UPDATE SET rule = EXCLUDED.rule, reason = EXCLUDED.reason, "
             "candidates = EXCLUDED.candidates, decided_at = EXCLUDED.decided_at"),
        {"o": order.id, "rule": plan.rule, "reason": plan.reason,
         "c": json.dumps([c.as_dict() for c in plan.considered], ensure_ascii=False),
         "at": now},
    )
    return True


def units_by_stock(conn: Connection, order_id: str) -> list[tuple[str, str]]:
    """The (warehouse, SKU) rows an order's allocation touches."""
    return [(r[0], r[1]) for r in conn.execute(
        text("SELECT DISTINCT warehouse, sku FROM allocations WHERE order_id = :o "
             "ORDER BY 1, 2"), {"o": order_id}).all()]


def existing_shipments(conn: Connection, order_id: str) -> tuple[list[Shipment], str, Any]:
    """Shipments already reserved for an order (empty when none), their rule and time."""
    rows = conn.execute(
        text(
            "SELECT line_no, warehouse, sku, quantity, rule, reason, reserved_at FROM allocations "
            "WHERE order_id = :o ORDER BY warehouse, line_no"
        ),
        {"o": order_id},
    ).mappings().all()
    by_wh: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_wh[r["warehouse"]].append(r)
    shipments = [
        Shipment(
            warehouse=w,
            lines=tuple(ShipmentLine(line_no=r["line_no"], sku=r["sku"], quantity=r["quantity"])
                        for r in rs),
            reason=rs[0]["reason"],
        )
        for w, rs in by_wh.items()
    ]
    first = rows[0] if rows else None
    return shipments, first["rule"] if first else "", first["reserved_at"] if first else None


def add_warehouse(
    conn: Connection, code: str, name: str, province: str, city: str, priority: int
) -> None:
    conn.execute(
        text(
            "INSERT INTO warehouses (code, name, province, city, priority, active) VALUES "
            "(:c, :n, :p, :city, :prio, true) ON CONFLICT (code) DO UPDATE SET name = :n, "
            "province = :p, city = :city, priority = :prio, active = true"
        ),
        {"c": code, "n": name, "p": province, "city": city, "prio": priority},
    )


def set_stock(conn: Connection, warehouse: str, sku: str, on_hand: int) -> int:
    """Set on-hand units; reserved units stay reserved. Returns the new available count."""
    reserved = conn.execute(
        text("SELECT reserved FROM stock WHERE warehouse = :w AND sku = :s FOR UPDATE"),
        {"w": warehouse, "s": sku},
    ).scalar_one_or_none() or 0
    if on_hand < reserved:
        raise ConfigurationError(
            f"{warehouse}/{sku} has {reserved} units reserved for orders; on hand cannot be "
            f"set below that (asked {on_hand})"
        )
    conn.execute(
        text(
            "INSERT INTO stock (warehouse, sku, on_hand, reserved, available) VALUES "
            "(:w, :s, :q, 0, :q) ON CONFLICT (warehouse, sku) DO UPDATE SET on_hand = :q, "
            "available = :q - stock.reserved, updated_at = now()"
        ),
        {"w": warehouse, "s": sku, "q": on_hand},
    )
    return on_hand - reserved


def release(conn: Connection, order_id: str) -> dict[tuple[str, str], int]:
    """Give an order's reserved, not yet shipped units back to available stock, once.

    Deleting the allocation rows is what makes a replay release nothing twice; stock rows are
    updated in (warehouse, SKU) order, the same order reservations lock them in.
    """
    freed = conn.execute(
        text("DELETE FROM allocations WHERE order_id = :o AND shipped_at IS NULL "
             "RETURNING warehouse, sku, quantity"),
        {"o": order_id},
    ).all()
    units: dict[tuple[str, str], int] = defaultdict(int)
    for warehouse, sku, quantity in freed:
        units[(warehouse, sku)] += quantity
    for (warehouse, sku), qty in sorted(units.items()):
        conn.execute(
            text("UPDATE stock SET available = available + :q, reserved = reserved - :q, "
                 "updated_at = now() WHERE warehouse = :w AND sku = :s"),
            {"q": qty, "w": warehouse, "s": sku},
        )
    return dict(units)


def ever_shipped(conn: Connection, order_id: str) -> bool:
    """Whether the order's goods left: a confirmed shipment, or a shipped status in its
    history (a channel may report shipping before orderhub reserved anything)."""
    return conn.execute(
        text("SELECT 1 FROM allocations WHERE order_id = :o AND shipped_at IS NOT NULL "
             "UNION ALL SELECT 1 FROM order_events WHERE order_id = :o AND status = ANY(:s) "
             "LIMIT 1"),
        {"o": order_id, "s": ["shipped", "delivered", "completed", "return_requested",
                              "returned"]},
    ).first() is not None
