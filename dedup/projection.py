"""Dedup's projection: accepted_orders (exact ids), dedup_fingerprints (suspects by window) and
the review_queue. Postgres is the guarantee: a rebalance, a restart or a cold cache can let no
duplicate through, because every check reads these tables in the batch's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from dedup.process import Fingerprint, Suspect, lock_id
from runtime.projection import json_rows, record_events


def claim_first_versions(
    conn: Connection, firsts: Iterable[tuple[str, bytes, bytes]], now: datetime
) -> tuple[dict[str, tuple[bytes, bytes | None]], frozenset[str]]:
    """Insert (order id, stored digest, delivery mark) not seen before; return each id's first
    (digest, delivery) and the ids this transaction claimed. The primary key on order_id makes
    a second acceptance impossible; only a claim records a fingerprint, so each order has at
    most one."""
    first: dict[str, tuple[bytes, bytes]] = {}
    for order_id, dg, delivery in firsts:
        first.setdefault(order_id, (dg, delivery))
    if not first:
        return {}, frozenset()
    ids = list(first)
    claimed = conn.execute(
        text(
            "INSERT INTO accepted_orders (order_id, first_digest, first_delivery, accepted_at) "
            "SELECT i, decode(d, 'hex'), decode(v, 'hex'), :now "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(i text, d text, v text) "
            "ON CONFLICT (order_id) DO NOTHING RETURNING order_id"
        ),
        {"rows": json_rows({"i": i, "d": first[i][0].hex(),
                            "v": None if first[i][1] is None else first[i][1].hex()}
                           for i in ids),
         "now": now},
    ).scalars().all()
    found = conn.execute(
        text("SELECT order_id, first_digest, first_delivery FROM accepted_orders "
             "WHERE order_id = ANY(:ids)"),
        {"ids": ids},
    )
    return ({order_id: (bytes(dg), None if delivery is None else bytes(delivery))
             for order_id, dg, delivery in found}, frozenset(claimed))


def lock_keys(conn: Connection, keys: Iterable[bytes]) -> None:
    """Serialize workers on a fingerprint: two reports of one purchase may sit on different
    partitions, and each must see the other's row. One transaction-scoped advisory lock per
    key (its first 8 bytes as a bigint), taken in a fixed order in one statement: no deadlock."""
    ordered = sorted({lock_id(k) for k in keys})
    if ordered:
        conn.execute(
            text("SELECT count(pg_advisory_xact_lock(k)) FROM "
                 "(SELECT k FROM unnest(CAST(:ids AS bigint[])) AS k ORDER BY k) AS sorted_ids"),
            {"ids": ordered})


def seen_fingerprints(
    conn: Connection, fps: Sequence[Fingerprint], window: timedelta
) -> tuple[list[Fingerprint], frozenset[str]]:
    """Fingerprints with the batch's keys inside the batch's event-time span ± window, and the
    ids among them that are (or were) in the review queue."""
    if not fps:
        return [], frozenset()
    rows = conn.execute(
        text("SELECT f.order_id, f.key, f.event_at, f.paid_cny, f.phone_tail, f.name_mark, "
             "f.channel, r.order_id IS NOT NULL AS reviewed FROM dedup_fingerprints f "
             "LEFT JOIN review_queue r ON r.order_id = f.order_id "
             "WHERE f.key = ANY(CAST(:keys AS bytea[])) AND f.event_at BETWEEN :lo AND :hi"),
        {"keys": sorted({f.key for f in fps}),
         "lo": min(f.event_at for f in fps) - window, "hi": max(f.event_at for f in fps) + window},
    ).all()
    seen = [Fingerprint(r.order_id, bytes(r.key), r.event_at, r.paid_cny, r.phone_tail,
                        r.name_mark, r.channel) for r in rows]
    return seen, frozenset(r.order_id for r in rows if r.reviewed)


def record_fingerprints(conn: Connection, fps: Sequence[Fingerprint]) -> None:
    """Store the fingerprints of orders this transaction claimed (`claim_first_versions`):
    no other transaction can claim them, so no order is stored twice."""
    once = {f.order_id: f for f in reversed(fps)}
    if not once:
        return
    conn.execute(
        text("INSERT INTO dedup_fingerprints (order_id, key, event_at, paid_cny, phone_tail, "
             "name_mark, channel) SELECT order_id, decode(key, 'hex'), event_at, paid_cny, "
             "phone_tail, name_mark, channel FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
             "AS t(order_id text, key text, event_at timestamptz, paid_cny numeric, "
             "phone_tail text, name_mark text, channel text)"),
        {"rows": json_rows({**vars(f), "key": f.key.hex()} for f in once.values())},
    )


PRUNE_LOCK = (0x6F726468, 0x64656475)  # two-int advisory lock space: never a key's bigint lock


def prune_fingerprints(conn: Connection, older_than: datetime) -> int | None:
    """Delete fingerprints whose event time is before `older_than` (BRIN on event time). Only one
    worker prunes at a time: the others skip (None) rather than wait or deadlock on rows."""
    if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
                        {"a": PRUNE_LOCK[0], "b": PRUNE_LOCK[1]}).scalar():
        return None
    # The expression of the BRIN index, which the window query never uses (see tables.py).
    return conn.execute(text("DELETE FROM dedup_fingerprints WHERE (event_at AT TIME ZONE 'UTC') "
                             "< (CAST(:cutoff AS timestamptz) AT TIME ZONE 'UTC')"),
                        {"cutoff": older_than}).rowcount


def open_review(conn: Connection, suspect: Suspect, now: datetime) -> bool:
    """Add the suspect to the queue; False when it was already there (a replay)."""
    return bool(conn.execute(
        text("INSERT INTO review_queue (order_id, matched_order_id, matched_fields, reason, "
             "raised_at) VALUES (:o, :m, CAST(:f AS jsonb), :r, :now) "
             "ON CONFLICT (order_id) DO NOTHING"),
        {"o": suspect.order_id, "m": suspect.duplicate_of,
         "f": json.dumps(list(suspect.matched_fields)), "r": suspect.reason, "now": now},
    ).rowcount)


def reviews(conn: Connection, order_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    rows = conn.execute(
        text("SELECT * FROM review_queue WHERE order_id = ANY(:ids) FOR UPDATE"), {"ids": ids}
    ).mappings()
    return {r["order_id"]: dict(r) for r in rows}


def raised_by(conn: Connection, order_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Open reviews these orders caused by arriving after later-in-event-time orders."""
    ids = sorted(set(order_ids))
    found: dict[str, list[dict[str, Any]]] = {}
    if not ids:
        return found
    rows = conn.execute(
        text("SELECT * FROM review_queue WHERE matched_order_id = ANY(:ids) AND state = 'open'"),
        {"ids": ids}).mappings()
    for r in rows:
        found.setdefault(r["matched_order_id"], []).append(dict(r))
    return found


def decide_review(
    conn: Connection, order_id: str, state: str, by: str, reason: str | None, at: datetime,
    duplicate_of: str | None,
) -> None:
    conn.execute(
        text("UPDATE review_queue SET state = :s, decided_by = :by, decided_at = :at, "
             "decision_reason = :r, duplicate_of = :d WHERE order_id = :o AND state = 'open'"),
        {"s": state, "by": by, "at": at, "r": reason, "d": duplicate_of, "o": order_id},
    )
    if duplicate_of is not None:
        conn.execute(text("UPDATE orders SET duplicate_of = :d WHERE id = :o"),
                     {"d": duplicate_of, "o": order_id})


def open_count(conn: Connection) -> int:
    return int(conn.execute(
        text("SELECT count(*) FROM review_queue WHERE state = 'open'")).scalar() or 0)


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
