"""Projection writes shared by the stages: tracking, dead letters, order status and history."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from schemas.order import OrderStatus
from schemas.status import next_status


def record_offsets(conn: Connection, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Remember the next offset per partition; never moves a partition's mark backwards."""
    if not offsets:
        return
    conn.execute(
        text(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at) "
            "VALUES (:g, :t, :p, :o, now()) ON CONFLICT (group_id, topic, partition) DO UPDATE "
            "SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset), "
            "updated_at = now()"
        ),
        [{"g": group, "t": t, "p": p, "o": o} for (t, p), o in sorted(offsets.items())],
    )


def record_dead_letters(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """One dead_letters row per refused input, idempotent on (stage, topic, partition, offset)."""
    if not rows:
        return
    conn.execute(
        text(
            "INSERT INTO dead_letters (stage, topic, partition, \"offset\", key, error_class, "
            "message, original) VALUES (:stage, :topic, :partition, :offset, :key, "
            ":error_class, :message, :original) "
            "ON CONFLICT (stage, topic, partition, \"offset\") DO NOTHING"
        ),
        list(rows),
    )


def record_events(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Append to order history; (order_id, event_key) makes a replay add nothing."""
    params = [{**r, "data": json.dumps(r.get("data", {}), default=str)} for r in rows]
    if not params:
        return
    conn.execute(
        text(
            "INSERT INTO order_events (order_id, event_key, kind, stage, status, occurred_at, "
            "data) VALUES (:order_id, :event_key, :kind, :stage, :status, :occurred_at, "
            "CAST(:data AS jsonb)) ON CONFLICT (order_id, event_key) DO NOTHING"
        ),
        params,
    )


def lock_orders(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Current rows of the given orders, locked for this transaction in a fixed (id) order."""
    ordered = sorted(set(ids))
    if not ordered:
        return {}
    rows = conn.execute(
        text(
            "SELECT id, status, status_at, updated_at, hold, document FROM orders "
            "WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"
        ),
        {"ids": ordered},
    ).mappings()
    return {r["id"]: dict(r) for r in rows}


def advance_status(
    conn: Connection, current: dict[str, Any], new: OrderStatus, at: datetime,
    *, since: datetime, hold: dict[str, Any] | None = None,
) -> bool:
    """Move a locked order to `new` if the state machine allows it; False when it stays put.

    `since` is the time of the newest event already applied from the same source (a
    channel's own clock for channel updates), so an older event never moves the order.
    """
    moved = next_status(OrderStatus(current["status"]), since, new, at)
    if moved is None:
        return False
    conn.execute(
        text(
            "UPDATE orders SET status = :s, status_at = :at, hold = CAST(:hold AS jsonb), "
            "recorded_at = now() WHERE id = :id"
        ),
        {"s": moved.value, "at": at, "id": current["id"],
         "hold": json.dumps(hold) if hold is not None else None},
    )
    current.update(status=moved.value, status_at=at, hold=hold)
    return True
