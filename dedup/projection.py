"""Dedup's projection: accepted_orders, whose primary key is the exact-duplicate guarantee."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, text

from runtime.projection import record_events


def claim_first_versions(
    conn: Connection, firsts: Iterable[tuple[str, str]], now: datetime
) -> dict[str, str]:
    """Insert (order id, digest) pairs not seen before; return every id's first digest.

    The primary key on order_id makes a second acceptance of the same id impossible, whatever
    a rebalance, a restart or a lost cache does.
    """
    first: dict[str, str] = {}
    for order_id, dg in firsts:
        first.setdefault(order_id, dg)
    rows = [{"id": i, "d": d, "now": now} for i, d in first.items()]
    if not rows:
        return {}
    conn.execute(
        text(
            "INSERT INTO accepted_orders (order_id, first_digest, accepted_at) "
            "VALUES (:id, :d, :now) ON CONFLICT (order_id) DO NOTHING"
        ),
        rows,
    )
    found = conn.execute(
        text("SELECT order_id, first_digest FROM accepted_orders WHERE order_id = ANY(:ids)"),
        {"ids": [r["id"] for r in rows]},
    )
    return {order_id: first for order_id, first in found}


def record_acceptances(
    conn: Connection, accepted: Sequence[tuple[str, str, str, datetime]]
) -> None:
    """History rows: (order id, verdict, digest, time)."""
    record_events(
        conn,
        (
            {"order_id": oid, "event_key": f"accepted:{verdict}:{dg}", "kind": "accepted",
             "stage": "dedup", "status": None, "occurred_at": at, "data": {"verdict": verdict}}
            for oid, verdict, dg, at in accepted
        ),
    )
