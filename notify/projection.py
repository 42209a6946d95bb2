"""Notify's projection: the send log, claimed before sending and marked after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text


def claim(conn: Connection, order_id: str, event: str, channel: str, message: str,
          now: datetime) -> bool:
    """Claim (order, event, channel); False when an earlier delivery already claimed it."""
    claimed = conn.execute(
        text(
            "INSERT INTO notifications (order_id, event, channel, state, message, claimed_at) "
            "VALUES (:o, :e, :c, 'claimed', :m, :now) "
            "ON CONFLICT (order_id, event, channel) DO NOTHING RETURNING id"
        ),
        {"o": order_id, "e": event, "c": channel, "m": message, "now": now},
    ).first()
    return claimed is not None


def mark_sent(conn: Connection, order_id: str, event: str, channel: str, now: datetime) -> None:
    conn.execute(
        text(
            "UPDATE notifications SET state = 'sent', sent_at = :now "
            "WHERE order_id = :o AND event = :e AND channel = :c"
        ),
        {"o": order_id, "e": event, "c": channel, "now": now},
    )


def load(conn: Connection, order_id: str, event: str, channel: str) -> dict[str, Any]:
    row = conn.execute(
        text(
            "SELECT message, state, claimed_at, sent_at FROM notifications "
            "WHERE order_id = :o AND event = :e AND channel = :c"
        ),
        {"o": order_id, "e": event, "c": channel},
    ).mappings().one()
    return dict(row)
