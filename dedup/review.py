"""What a person may decide about a review item, checked before the decision is sent.

Decisions travel as `OrderStatusChanged` on orders.status (source `review:<name>`), so every
stage sees them; the dedup stage applies them. Deciding the same thing twice is a no-op;
deciding on an item that is not open, or not there, is an error that says why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from schemas.errors import ConfigurationError
from schemas.events import OrderStatusChanged
from schemas.order import OrderStatus


def queue(conn: Connection, everything: bool) -> list[dict[str, Any]]:
    rows = conn.execute(text(
        "SELECT r.order_id, r.matched_order_id, r.matched_fields, r.reason, r.state, "
        "r.raised_at, r.decided_at, r.decided_by, r.decision_reason, r.duplicate_of, "
        "o.channel, o.paid_cny, o.status FROM review_queue r LEFT JOIN orders o "
        "ON o.id = r.order_id WHERE (:all OR r.state = 'open') ORDER BY r.raised_at, r.order_id"),
        {"all": everything}).mappings()
    return [dict(r) for r in rows]


def decision(
    conn: Connection, order_id: str, action: str, by: str, reason: str | None, at: datetime,
    duplicate_of: str | None = None,
) -> OrderStatusChanged | None:
    """The event that carries the decision, or None when it was already taken (idempotent)."""
    if not by.strip():
        raise ConfigurationError("--by must name the person deciding")
    item = conn.execute(text("SELECT state, matched_order_id, duplicate_of FROM review_queue "
                             "WHERE order_id = :o"), {"o": order_id}).mappings().first()
    if item is None:
        raise ConfigurationError(f"{order_id} is not in the review queue; see `orderhub review "
                                 "list`")
    wanted = "released" if action == "release" else "cancelled"
    if item["state"] == wanted and (action == "release" or item["duplicate_of"] == duplicate_of):
        return None
    if item["state"] != "open":
        raise ConfigurationError(f"{order_id} was already {item['state']}; a decision cannot be "
                                 "changed here")
    if action == "release":
        return OrderStatusChanged(order_id=order_id, status=OrderStatus.PAID, at=at,
                                  source=f"review:{by}", reason=reason or "released by review")
    if duplicate_of is None or duplicate_of == order_id:
        raise ConfigurationError("--as-duplicate-of must name the other order")
    known = conn.execute(text("SELECT 1 FROM orders WHERE id = :o"), {"o": duplicate_of}).first()
    if known is None:
        raise ConfigurationError(f"no order {duplicate_of!r} to be a duplicate of")
    return OrderStatusChanged(order_id=order_id, status=OrderStatus.DUPLICATE, at=at,
                              source=f"review:{by}", reason=reason or "duplicate",
                              duplicate_of=duplicate_of)
