"""Notify's projection: the send log.

One row per (order, event, configured channel), unique, written by the stage in its batch
transaction (`plan`). The sender then claims due rows in a transaction of their own (state
`sending` with a lease, committed before any provider call), calls the provider, and marks each
row `sent`, back to `pending` with a later `due_at` (retry, quiet hours) or `failed`. A lease that
runs out (the sender died mid-call) makes the row due again, with the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from runtime.projection import json_rows
from schemas.order import Order

COLUMNS = ("order_id", "event", "channel", "state", "message", "claimed_at", "provider",
           "target", "template", "params", "idempotency_key", "event_at", "due_at",
           "skip_reason", "finished_at", "emitted_at")
FINISHED = ("sent", "failed", "skipped")


def load_orders(conn: Connection, ids: Iterable[str]) -> dict[str, Order]:
    """Canonical orders from the projection (for status changes, which carry only the id)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = conn.execute(text("SELECT id, document FROM orders WHERE id = ANY(:ids)"),
                        {"ids": wanted})
    return {r.id: Order.model_validate(r.document) for r in rows}


COLUMN_TYPES = {"claimed_at": "timestamptz", "params": "jsonb", "event_at": "timestamptz",
                "due_at": "timestamptz", "finished_at": "timestamptz",
                "emitted_at": "timestamptz"}
INSERT_PLANNED = text(
    f"INSERT INTO notifications ({', '.join(COLUMNS)}) "  # noqa: S608 (constant names)
    "SELECT " + ", ".join("coalesce(params, '{}')" if c == "params" else c for c in COLUMNS)
    + " "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t("
    + ", ".join(f"{c} {COLUMN_TYPES.get(c, 'text')}" for c in COLUMNS)
    + ") ON CONFLICT (order_id, event, channel) DO NOTHING"
)


def plan(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write planned notifications in one statement; a row that exists already is left as
    it is."""
    batch = json_rows({c: r.get(c) for c in COLUMNS} for r in rows)
    if batch is not None:
        conn.execute(INSERT_PLANNED, {"rows": batch})


def skipped(conn: Connection, keys: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """The skipped rows among (order, event, channel) keys: the stage emits them again on a
    replay, as it did the first time."""
    if not keys:
        return []
    orders, events, channels = (list(k) for k in zip(*keys, strict=True))
    return [dict(r) for r in conn.execute(text(
        "SELECT n.* FROM notifications n JOIN unnest(CAST(:o AS text[]), CAST(:e AS text[]), "
        "CAST(:c AS text[])) AS k(o, e, c) "
        "ON n.order_id = k.o AND n.event = k.e AND n.channel = k.c WHERE n.state = 'skipped' "
        "ORDER BY n.id"), {"o": orders, "e": events, "c": channels}).mappings()]


def claim_due(conn: Connection, now: datetime, limit: int, lease_s: float) -> list[dict[str, Any]]:
    """Take up to `limit` due rows for this sender: pending and due, or sending with an expired
    lease. Other senders skip the locked rows, so each row has one sender at a time."""
    return [dict(r) for r in conn.execute(text(
        "UPDATE notifications SET state = 'sending', lease_until = :lease WHERE id IN ("
        "  SELECT id FROM notifications WHERE state IN ('pending', 'sending') AND due_at <= :now"
        "  AND (state = 'pending' OR lease_until <= :now)"
        "  ORDER BY due_at, id LIMIT :n FOR UPDATE SKIP LOCKED) "
        "RETURNING *"),
        {"now": now, "lease": now + timedelta(seconds=lease_s), "n": limit}).mappings()]


FINISH = text(
    "UPDATE notifications n SET state = t.state, attempts = t.attempts, lease_until = NULL, "
    "sent_at = CASE WHEN t.state = 'sent' THEN CAST(:at AS timestamptz) ELSE n.sent_at END, "
    "finished_at = CASE WHEN t.state = 'pending' THEN n.finished_at "
    "ELSE CAST(:at AS timestamptz) END, "
    "provider_ref = CASE WHEN t.state = 'sent' THEN t.ref ELSE n.provider_ref END, "
    "last_error = CASE WHEN t.state = 'sent' THEN NULL ELSE coalesce(t.error, n.last_error) END, "
    "due_at = coalesce(t.due_at, n.due_at) "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(id bigint, state text, attempts integer, "
    "ref text, error text, due_at timestamptz) WHERE n.id = t.id AND n.state = 'sending'"
)


def finish(conn: Connection, at: datetime, results: Iterable[Mapping[str, Any]]) -> None:
    """Record a round's outcomes in one statement, each a mapping of `id`, `state` (`sent`,
    `failed`, or `pending` again from `due_at`), `attempts`, and `ref` (the provider's id of a
    sent message) or `error`. Only rows still `sending` (this sender's claim) change."""
    batch = json_rows(results)
    if batch is not None:
        conn.execute(FINISH, {"at": at, "rows": batch})


def unemitted(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Rows the sender finished whose BuyerNotified is not on the topic yet."""
    return [dict(r) for r in conn.execute(text(
        "SELECT * FROM notifications WHERE emitted_at IS NULL "
        "AND state IN ('sent', 'failed', 'skipped') ORDER BY id LIMIT :n"),
        {"n": limit}).mappings()]


def mark_emitted(conn: Connection, ids: Sequence[int], at: datetime) -> None:
    conn.execute(text("UPDATE notifications SET emitted_at = :at WHERE id = ANY(:ids)"),
                 {"at": at, "ids": list(ids)})


def outstanding(conn: Connection, now: datetime) -> int:
    """Notifications due now and not finished (what `drain` waits for)."""
    return int(conn.execute(text(
        "SELECT count(*) FROM notifications WHERE (state IN ('pending', 'sending') "
        "AND due_at <= :now) OR (emitted_at IS NULL AND state IN ('sent', 'failed'))"),
        {"now": now}).scalar_one())


def for_order(conn: Connection, order_id: str) -> list[dict[str, Any]]:
    """An order's send log, oldest first (for `orders show`)."""
    return [dict(r) for r in conn.execute(text(
        "SELECT event, channel, state, provider, message, attempts, skip_reason, last_error, "
        "claimed_at, due_at, sent_at, finished_at FROM notifications WHERE order_id = :o "
        "ORDER BY id"), {"o": order_id}).mappings()]
