"""Read models for the CLI: one order with everything decided about it, and order lists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from schemas.order import Order


def order_view(conn: Connection, order_id: str) -> dict[str, Any] | None:
    """The canonical order (DESIGN section 3) plus shipments, hold, notifications, events."""
    row = conn.execute(
        text("SELECT document, status, hold, duplicate_of FROM orders WHERE id = :id"),
        {"id": order_id},
    ).mappings().first()
    if row is None:
        return None
    # JSONB does not keep key order; the model gives the canonical field order back.
    view = Order.model_validate(row["document"]).model_dump(mode="json")
    view.update(status=row["status"], hold=row["hold"], duplicate_of=row["duplicate_of"])
    view["shipments"] = _shipments(conn, order_id)
    decision = _rows(conn, "SELECT rule, reason, candidates, decided_at FROM "
                     "allocation_decisions WHERE order_id = :id", order_id)
    view["allocation"] = decision[0] if decision else None  # "why this warehouse?"
    approval = _rows(conn, "SELECT state, paid_cny, reasons, raised_at, decided_by, decided_at "
                     "FROM approvals WHERE order_id = :id", order_id)
    view["approval"] = approval[0] if approval else None
    review = _rows(conn, "SELECT state, matched_order_id, matched_fields, reason, decided_by, "
                   "decided_at FROM review_queue WHERE order_id = :id", order_id)
    view["review"] = review[0] if review else None
    view["notifications"] = _rows(
        conn, "SELECT event, channel, state, provider, message, attempts, skip_reason, "
        "last_error, claimed_at, due_at, sent_at, finished_at FROM notifications "
        "WHERE order_id = :id ORDER BY claimed_at, id", order_id)
    view["events"] = _rows(
        conn, "SELECT kind, stage, status, occurred_at, recorded_at, data FROM order_events "
        "WHERE order_id = :id ORDER BY recorded_at, id", order_id)
    return view


def list_orders(
    conn: Connection, status: str | None, channel: str | None, limit: int
) -> list[dict[str, Any]]:
    """Order summaries, most recently paid first."""
    return _rows(
        conn,
        "SELECT id, channel, shop, status, paid_at, currency, paid_amount, paid_cny FROM orders "
        "WHERE (CAST(:status AS text) IS NULL OR status = :status) "
        "AND (CAST(:channel AS text) IS NULL OR channel = :channel) "
        "ORDER BY paid_at DESC NULLS LAST, id LIMIT :limit",
        None, status=status, channel=channel, limit=limit,
    )


def status_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status ORDER BY 1"))
    return {status: n for status, n in rows}


def _shipments(conn: Connection, order_id: str) -> list[dict[str, Any]]:
    rows = _rows(conn, "SELECT warehouse, line_no, sku, quantity, rule, reason, shipped_at, "
                 "carrier, waybill FROM allocations WHERE order_id = :id ORDER BY warehouse, "
                 "line_no", order_id)
    shipments: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = shipments.setdefault(r["warehouse"], {
            "warehouse": r["warehouse"], "lines": [], "rule": r["rule"], "reason": r["reason"],
            "shipped_at": r["shipped_at"], "carrier": r["carrier"], "waybill": r["waybill"]})
        s["lines"].append({"line_no": r["line_no"], "sku": r["sku"], "quantity": r["quantity"]})
    return list(shipments.values())


def _rows(conn: Connection, sql: str, order_id: str | None, **params: Any) -> list[dict[str, Any]]:
    result = conn.execute(text(sql), {"id": order_id, **params}).mappings()
    return [dict(r) for r in result]
