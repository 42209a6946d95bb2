"""Projection writes shared by the stages: tracking, dead letters, order status and history."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
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


INSERT_EVENTS = text(
    "INSERT INTO order_events (order_id, event_key, kind, stage, status, occurred_at, data) "
    "SELECT order_id, event_key, kind, stage, status, occurred_at, coalesce(data, '{}') "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(order_id text, event_key text, "
    "kind text, stage text, status text, occurred_at timestamptz, data jsonb) "
    "ON CONFLICT (order_id, event_key) DO NOTHING"
)


def json_rows(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """Rows as one JSON array for `jsonb_to_recordset`, None when there are none.

    One statement then writes a whole batch: psycopg sends one string as it is, where a
    row-by-row executemany or arrays of text (escaped character by character) cost the
    client several times more. Values that JSON lacks (times, decimals) go as their text."""
    text_ = json.dumps(list(rows), default=str)
    return None if text_ == "[]" else text_


def record_events(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Append to order history; (order_id, event_key) makes a replay add nothing."""
    if (batch := json_rows(rows)) is not None:
        conn.execute(INSERT_EVENTS, {"rows": batch})


def lock_orders(
    conn: Connection, ids: Iterable[str], *, document: bool = True
) -> dict[str, dict[str, Any]]:
    """Current rows of the given orders, locked for this transaction in a fixed (id) order.

    `document=False` leaves the canonical order's JSON out: parsing 500 of them is a good part
    of a batch's time for a stage that only needs the status (see `order_document`)."""
    ordered = sorted(set(ids))
    if not ordered:
        return {}
    rows = conn.execute(
        text(
            "SELECT id, status, status_at, updated_at, hold"  # noqa: S608 (constant text)
            f"{', document' if document else ''} FROM orders WHERE id = ANY(:ids) "
            "ORDER BY id FOR UPDATE"
        ),
        {"ids": ordered},
    ).mappings()
    return {r["id"]: dict(r) for r in rows}


def order_document(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The canonical order of a row from `lock_orders`, read now if it was left out."""
    if "document" not in row:
        row["document"] = conn.execute(text("SELECT document FROM orders WHERE id = :id"),
                                       {"id": row["id"]}).scalar_one()
    return dict(row["document"])


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
