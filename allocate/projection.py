"""Allocate's projection: warehouses, stock reservations per order or in bulk, allocations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from allocate.process import Candidate, Plan, Point
from runtime.projection import json_rows
from schemas.errors import ConfigurationError, OrderhubError
from schemas.events import Shipment, ShipmentLine
from schemas.order import Order

Locate = Callable[[str | None, str | None, str | None], Point | None]


class ReservationMismatch(OrderhubError):
    """Locked stock did not take a decrement planned against it: a bug, never retried."""


@dataclass(frozen=True)
class Warehouse:
    """An active warehouse as routing sees it: code, priority (lower first) and location."""

    code: str
    priority: int
    location: Point | None


def load_warehouses(conn: Connection, locate: Locate) -> list[Warehouse]:
    """Active warehouses in priority order, located at their configured coordinates, else at
    the centre of their city."""
    rows = conn.execute(
        text("SELECT code, priority, province, city, latitude, longitude FROM warehouses "
             "WHERE active ORDER BY priority, code")
    ).mappings().all()
    return [Warehouse(code=w["code"], priority=w["priority"],
                      location=((float(w["latitude"]), float(w["longitude"]))
                                if w["latitude"] is not None and w["longitude"] is not None
                                else locate("CN", w["province"], w["city"])))
            for w in rows]


def candidates(warehouses: Sequence[Warehouse], stock: Mapping[str, dict[str, int]]
               ) -> list[Candidate]:
    """Each warehouse with its available units; the dicts are shared, not copied, so a caller
    that decrements `stock` is what the next plan sees."""
    return [Candidate(code=w.code, priority=w.priority, location=w.location,
                      available=stock.get(w.code, {}))
            for w in warehouses]


def load_candidates(conn: Connection, skus: Sequence[str], locate: Locate) -> list[Candidate]:
    """Active warehouses with their available units of the given SKUs (no lock: the caller's
    conditional decrement is what guards the stock)."""
    warehouses = load_warehouses(conn, locate)
    stock: dict[str, dict[str, int]] = {w.code: {} for w in warehouses}
    rows = conn.execute(
        text("SELECT warehouse, sku, available FROM stock WHERE sku = ANY(:skus)"),
        {"skus": list(skus)},
    )
    for warehouse, sku, available in rows:
        if warehouse in stock:
            stock[warehouse][sku] = available
    return candidates(warehouses, stock)


def reserve(conn: Connection, order: Order, plan: Plan, now: datetime) -> bool:
    """Reserve the plan's units; False (the caller rolls back its savepoint) if stock ran out.

    Decrements run in (warehouse, SKU) order so concurrent allocators take row locks in the same
    order, and each succeeds only while `available >= qty` (the CHECK constraint is the
    backstop). The allocations key (order, line, warehouse) makes a replay reserve nothing twice.
    """
    for (warehouse, sku), qty in sorted(units_of([plan]).items()):
        done = conn.execute(
            text(
                "UPDATE stock SET available = available - :q, reserved = reserved + :q, "
                "updated_at = now() WHERE warehouse = :w AND sku = :s AND available >= :q"
            ),
            {"q": qty, "w": warehouse, "s": sku},
        )
        if done.rowcount != 1:
            return False
    _record(conn, [(order, plan)], now)
    return True


def lock_stock(conn: Connection, skus: Iterable[str]) -> dict[str, dict[str, int]]:
    """Available units of these SKUs per warehouse, every row locked until commit.

    Rows are locked in (warehouse, SKU) order, after the batch's order rows (`lock_orders`): the
    one order every allocator takes them in. While they are held, what this returns stays true
    for this transaction, so a caller may plan many orders against it in memory.
    """
    stock: dict[str, dict[str, int]] = defaultdict(dict)
    rows = conn.execute(
        text("SELECT warehouse, sku, available FROM stock WHERE sku = ANY(:skus) "
             "ORDER BY warehouse, sku FOR UPDATE"),
        {"skus": sorted(set(skus))},
    )
    for warehouse, sku, available in rows:
        stock[warehouse][sku] = available
    return dict(stock)


def reserve_all(conn: Connection, reserved: Sequence[tuple[Order, Plan]], now: datetime) -> None:
    """Write plans made against `lock_stock` rows: one decrement per (warehouse, SKU) in one
    statement, then every allocation and decision.

    The rows are locked and the plans fit them, so each decrement must apply; one that does not
    means the plans were made against something else, and the batch stops instead of writing
    allocations without stock behind them. The CHECK constraint stays the backstop.
    """
    if not reserved:
        return
    units = sorted(units_of(plan for _, plan in reserved).items())
    done = conn.execute(
        text("UPDATE stock s SET available = s.available - v.q, reserved = s.reserved + v.q, "
             "updated_at = now() FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
             "AS v(w text, s text, q integer) "
             "WHERE s.warehouse = v.w AND s.sku = v.s AND s.available >= v.q"),
        {"rows": json_rows({"w": w, "s": s, "q": q} for (w, s), q in units)},
    )
    if done.rowcount != len(units):
        raise ReservationMismatch(
            f"{done.rowcount} of {len(units)} locked stock rows took their decrement; the "
            f"in-memory stock snapshot disagrees with Postgres (a bug)")
    _record(conn, reserved, now)


def units_of(plans: Iterable[Plan]) -> dict[tuple[str, str], int]:
    """Units the plans take per (warehouse, SKU)."""
    units: dict[tuple[str, str], int] = defaultdict(int)
    for plan in plans:
        for shipment in plan.shipments:
            for ln in shipment.lines:
                units[(shipment.warehouse, ln.sku)] += ln.quantity
    return dict(units)


def _record(conn: Connection, reserved: Sequence[tuple[Order, Plan]], now: datetime) -> None:
    """The allocation rows and the decision of each reserved order, one statement each
    (`json_rows`: one JSON document per statement, however many orders)."""
    conn.execute(
        text("INSERT INTO allocations (order_id, line_no, warehouse, sku, quantity, rule, "
             "reason, reserved_at) SELECT v.*, :at FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
             "AS v(o text, n integer, w text, s text, q integer, rule text, reason text)"),
        {"rows": json_rows({"o": order.id, "n": ln.line_no, "w": shipment.warehouse,
                            "s": ln.sku, "q": ln.quantity, "rule": plan.rule,
                            "reason": shipment.reason}
                           for order, plan in reserved for shipment in plan.shipments
                           for ln in shipment.lines),
         "at": now},
    )
    conn.execute(
        text("INSERT INTO allocation_decisions (order_id, rule, reason, candidates, decided_at) "
             "SELECT v.*, :at FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
             "AS v(o text, rule text, reason text, c jsonb) ON CONFLICT (order_id) DO "
             "UPDATE SET rule = EXCLUDED.rule, reason = EXCLUDED.reason, "
             "candidates = EXCLUDED.candidates, decided_at = EXCLUDED.decided_at"),
        {"rows": json_rows({"o": order.id, "rule": plan.rule, "reason": plan.reason,
                            "c": [c.as_dict() for c in plan.considered]}
                           for order, plan in reserved),
         "at": now},
    )


def units_by_stock(conn: Connection, order_id: str) -> list[tuple[str, str]]:
    """The (warehouse, SKU) rows an order's allocation touches."""
    return [(r[0], r[1]) for r in conn.execute(
        text("SELECT DISTINCT warehouse, sku FROM allocations WHERE order_id = :o "
             "ORDER BY 1, 2"), {"o": order_id}).all()]


Earlier = tuple[list[Shipment], str, Any]
"""An order's reserved shipments, their rule and reservation time."""


def existing_shipments(conn: Connection, order_id: str) -> Earlier:
    """Shipments already reserved for an order (empty when none), their rule and time."""
    return shipments_of(conn, [order_id]).get(order_id, ([], "", None))


def shipments_of(conn: Connection, order_ids: Sequence[str]) -> dict[str, Earlier]:
    """`existing_shipments` of many orders in one query; orders with none are left out."""
    rows = conn.execute(
        text(
            "SELECT order_id, line_no, warehouse, sku, quantity, rule, reason, reserved_at "
            "FROM allocations WHERE order_id = ANY(:o) ORDER BY order_id, warehouse, line_no"
        ),
        {"o": list(order_ids)},
    ).mappings().all()
    by_order: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_order[r["order_id"]].append(r)
    return {order_id: _earlier(rs) for order_id, rs in by_order.items()}


def _earlier(rows: Sequence[Any]) -> Earlier:
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
    return shipments, rows[0]["rule"], rows[0]["reserved_at"]


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
