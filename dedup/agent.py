"""Dedup stage wiring: orders.normalized → exact and suspected duplicates → orders.accepted or
orders.review; orders.status → review decisions (release → orders.accepted, cancel → duplicate).

Suspects: the later order in event time is held. When it arrived first and already went on, it
is held now — status `review_hold` in the projection, and an `OrderStatusChanged` on
orders.status so that allocate releases its reservation (allocate never allocates an order whose
projection is not paid/backordered, so a hold that lands first stops allocation outright). One
that already shipped cannot be held; then the newcomer is held instead, so nothing ships twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from dedup import metrics
from dedup.process import (
    Fingerprint,
    Suspect,
    classify,
    decide,
    delivery_mark,
    fingerprint,
    stored_digest,
)
from dedup.projection import (
    claim_first_versions,
    decide_review,
    lock_keys,
    open_count,
    open_review,
    prune_fingerprints,
    raised_by,
    record_acceptances,
    record_fingerprints,
    reviews,
    seen_fingerprints,
)
from normalize.projection import digest
from runtime.projection import advance_status, lock_orders, order_document, record_events
from runtime.runner import Context, Emit
from runtime.settings import DedupSettings, Settings
from schemas.base import SHANGHAI
from schemas.events import (
    DuplicateSuspected,
    Event,
    OrderAccepted,
    OrderNormalized,
    OrderStatusChanged,
)
from schemas.order import Order, OrderStatus
from schemas.topics import ACCEPTED, NORMALIZED, REVIEW, STATUS, TopicSpec

ANY_TIME = datetime.min.replace(tzinfo=SHANGHAI)
REVIEWER = "review:"  # OrderStatusChanged.source of a person's decision: "review:<name>"
HOLDABLE = frozenset({OrderStatus.PENDING_PAYMENT, OrderStatus.PAID, OrderStatus.REVIEW_HOLD,
                      OrderStatus.APPROVAL_HOLD, OrderStatus.BACKORDERED, OrderStatus.ALLOCATED})


@dataclass(frozen=True)
class Normalized:
    event: OrderNormalized
    digest: str  # hex: history event keys
    stored: tuple[bytes, bytes]  # (stored_digest, delivery_mark): what accepted_orders keeps
    fingerprint: Fingerprint | None


class DedupStage:
    name = "dedup"
    sources: tuple[TopicSpec, ...] = (NORMALIZED, STATUS)

    def __init__(self, settings: DedupSettings, registry: CollectorRegistry) -> None:
        self.window = timedelta(seconds=settings.window_s)
        self.tolerance = settings.amount_tolerance_cny
        self.retention = timedelta(seconds=settings.fingerprint_retention_s)
        self.prune_every = settings.prune_every_batches
        self.batches = 0
        self.metrics = metrics.build(registry)

    def prepare(self, event: Event, ctx: Context) -> Normalized | OrderStatusChanged:
        if isinstance(event, OrderStatusChanged):
            return event
        normalized = cast(OrderNormalized, event)
        dg = digest(normalized.order)
        stored = (stored_digest(dg), delivery_mark(normalized.delivery_id))
        return Normalized(normalized, dg, stored, fingerprint(normalized.order))

    def project(
        self, conn: Connection, items: Sequence[Normalized | OrderStatusChanged], ctx: Context
    ) -> list[Emit]:
        orders = [i for i in items if isinstance(i, Normalized)]
        decisions = [i for i in items if isinstance(i, OrderStatusChanged)
                     and i.source.startswith(REVIEWER)]
        emits = self._orders(conn, orders, ctx) + self._decisions(conn, decisions, ctx)
        self.metrics.open_reviews.set(open_count(conn))
        return emits

    # -- orders.normalized -------------------------------------------------------------------

    def _orders(self, conn: Connection, items: Sequence[Normalized], ctx: Context) -> list[Emit]:
        if not items:
            return []
        firsts, claimed = claim_first_versions(
            conn, ((n.event.order.id, *n.stored) for n in items), ctx.now)
        verdicts = [classify(*firsts[n.event.order.id], *n.stored) for n in items]
        new = [n.fingerprint for n, v in zip(items, verdicts, strict=True)
               if v == "unique" and n.fingerprint is not None]
        lock_keys(conn, (f.key for f in new))
        seen, already_reviewed = seen_fingerprints(conn, new, self.window)
        reviewed = set(already_reviewed)  # grows as this batch holds orders
        rows = lock_orders(conn, {n.event.order.id for n in items}
                           | {f.order_id for f in seen}, document=False)
        pool = {f.order_id: f for f in seen}
        # A first sighting whose fingerprint is already stored is a replay: look up once per
        # batch what it decided then, instead of once per order.
        replayed = [f.order_id for f in new if f.order_id in pool]
        self.earlier = reviews(conn, replayed)
        self.caused = raised_by(conn, replayed)
        emits: list[Emit] = []
        history = []
        for n, verdict in zip(items, verdicts, strict=True):
            order = n.event.order
            self.metrics.verdicts.labels(channel=order.channel.value, verdict=verdict).inc()
            history.append((order.id, verdict, n.digest, ctx.now))
            if verdict == "duplicate":
                continue  # the same version again from another delivery: already on its way
            if verdict == "update" or n.fingerprint is None:
                emits.append(_accepted(order, "update" if verdict == "update" else "unique"))
                continue
            emits += self._first_sighting(conn, n.fingerprint, order, pool, reviewed, rows, ctx)
            pool[order.id] = n.fingerprint
        # Only the orders this transaction claimed: each order's fingerprint is stored once.
        record_fingerprints(conn, [n.fingerprint for n, v in zip(items, verdicts, strict=True)
                                   if v == "unique" and n.fingerprint is not None
                                   and n.event.order.id in claimed])
        record_acceptances(conn, history)
        self.batches += 1
        if self.batches % self.prune_every == 0:
            prune_fingerprints(conn, ctx.now - self.retention)
        return emits

    def _first_sighting(
        self, conn: Connection, fp: Fingerprint, order: Order, pool: dict[str, Fingerprint],
        reviewed: set[str], rows: dict[str, dict[str, Any]], ctx: Context,
    ) -> list[Emit]:
        already = self.earlier.get(order.id)
        if already is not None:  # a replay of an order this stage held before
            return self._replayed(conn, order, already, rows)
        others = [f for i, f in pool.items() if i != order.id]
        decision = decide(fp, others, frozenset(reviewed), self.window, self.tolerance)
        emits: list[Emit] = []
        for earlier in decision.hold_earlier_arrivals:
            row = rows.get(earlier.order_id)
            if row is None or OrderStatus(row["status"]) not in HOLDABLE:
                # It already shipped (or is gone): hold the newcomer instead.
                flipped = Suspect(order.id, earlier.order_id, earlier.matched_fields,
                                  f"{earlier.reason}; {earlier.order_id} already "
                                  f"{row['status'] if row else 'left'}")
                reviewed.add(order.id)
                return [self._hold(conn, flipped, order, rows, ctx)]
        for earlier in decision.hold_earlier_arrivals:
            emits += self._hold_went_on(conn, earlier, rows, ctx)
            reviewed.add(earlier.order_id)
        if decision.hold_new is not None:
            reviewed.add(order.id)
            return [*emits, self._hold(conn, decision.hold_new, order, rows, ctx)]
        if not decision.hold_earlier_arrivals:  # a replay: re-emit the holds it caused
            emits += [_hold_change(caused["order_id"], order.id, caused["raised_at"])
                      for caused in self.caused.get(order.id, [])]
        return [*emits, _accepted(order, "unique")]

    def _hold(self, conn: Connection, suspect: Suspect, order: Order,
              rows: dict[str, dict[str, Any]], ctx: Context) -> Emit:
        """Hold the order being processed: it never reaches orders.accepted."""
        if open_review(conn, suspect, ctx.now):
            self.metrics.suspects.labels(channel=order.channel.value).inc()
        row = rows.get(order.id)
        if row is not None:
            advance_status(conn, row, OrderStatus.REVIEW_HOLD, ctx.now, since=ANY_TIME,
                           hold=_hold_doc(suspect))
        _history(conn, order.id, f"suspected:{suspect.duplicate_of}", ctx.now,
                 {"duplicate_of": suspect.duplicate_of, "reason": suspect.reason})
        held = order.model_copy(update={"status": OrderStatus.REVIEW_HOLD})
        return Emit(REVIEW, order.id, DuplicateSuspected(
            order=held, duplicate_of=suspect.duplicate_of,
            matched_fields=suspect.matched_fields, reason=suspect.reason))

    def _hold_went_on(self, conn: Connection, suspect: Suspect, rows: dict[str, dict[str, Any]],
                      ctx: Context) -> list[Emit]:
        """Hold an order that arrived first but is later in event time: it already went on."""
        row = rows[suspect.order_id]
        emits: list[Emit] = []
        document = order_document(conn, row)
        if open_review(conn, suspect, ctx.now):
            self.metrics.suspects.labels(channel=str(document["channel"])).inc()
        if advance_status(conn, row, OrderStatus.REVIEW_HOLD, ctx.now, since=ANY_TIME,
                          hold=_hold_doc(suspect)):
            _history(conn, suspect.order_id, f"suspected:{suspect.duplicate_of}", ctx.now,
                     {"duplicate_of": suspect.duplicate_of, "reason": suspect.reason})
        order = Order.model_validate(document).model_copy(
            update={"status": OrderStatus.REVIEW_HOLD})
        emits.append(Emit(REVIEW, suspect.order_id, DuplicateSuspected(
            order=order, duplicate_of=suspect.duplicate_of,
            matched_fields=suspect.matched_fields, reason=suspect.reason)))
        emits.append(_hold_change(suspect.order_id, suspect.duplicate_of, ctx.now))
        return emits

    def _replayed(self, conn: Connection, order: Order, review: dict[str, Any],
                  rows: dict[str, dict[str, Any]]) -> list[Emit]:
        if review["state"] == "released":
            return [_accepted(order, "released")]
        if review["state"] == "cancelled":
            return []
        held = order.model_copy(update={"status": OrderStatus.REVIEW_HOLD})
        return [Emit(REVIEW, order.id, DuplicateSuspected(
            order=held, duplicate_of=review["matched_order_id"],
            matched_fields=tuple(review["matched_fields"]), reason=review["reason"]))]

    # -- orders.status: a person's decision ---------------------------------------------------

    def _decisions(self, conn: Connection, items: Sequence[OrderStatusChanged], ctx: Context
                   ) -> list[Emit]:
        if not items:
            return []
        queue = reviews(conn, (d.order_id for d in items))
        rows = lock_orders(conn, (d.order_id for d in items))
        emits: list[Emit] = []
        for d in items:
            review, row = queue.get(d.order_id), rows.get(d.order_id)
            if review is None or row is None:
                continue  # the CLI checks first; a stray event changes nothing
            by = d.source.removeprefix(REVIEWER)
            if d.status is OrderStatus.PAID and review["state"] in ("open", "released"):
                if review["state"] == "open":
                    decide_review(conn, d.order_id, "released", by, d.reason, d.at, None)
                    advance_status(conn, row, OrderStatus.PAID, d.at, since=ANY_TIME)
                    _history(conn, d.order_id, f"released:{by}", d.at, {"by": by,
                                                                       "reason": d.reason})
                    self._decided(review, d.at, "released")
                    review["state"] = "released"
                order = Order.model_validate(row["document"])
                emits.append(_accepted(order, "released"))
            elif d.status is OrderStatus.DUPLICATE and review["state"] == "open":
                decide_review(conn, d.order_id, "cancelled", by, d.reason, d.at,
                              d.duplicate_of or review["matched_order_id"])
                advance_status(conn, row, OrderStatus.DUPLICATE, d.at, since=ANY_TIME)
                _history(conn, d.order_id, f"cancelled:{by}", d.at,
                         {"by": by, "duplicate_of": d.duplicate_of or review["matched_order_id"]})
                self._decided(review, d.at, "cancelled")
                review["state"] = "cancelled"
        return emits

    def _decided(self, review: dict[str, Any], at: datetime, outcome: str) -> None:
        waited = (at - review["raised_at"]).total_seconds()
        self.metrics.decision_seconds.labels(outcome=outcome).observe(max(waited, 0.0))


def _accepted(order: Order, reason: Literal["unique", "update", "released"]) -> Emit:
    return Emit(ACCEPTED, order.id, OrderAccepted(order=order, reason=reason))


def _hold_change(order_id: str, duplicate_of: str, at: datetime) -> Emit:
    return Emit(STATUS, order_id, OrderStatusChanged(
        order_id=order_id, status=OrderStatus.REVIEW_HOLD, at=at, source="dedup",
        reason=f"suspected duplicate of {duplicate_of}"))


def _hold_doc(suspect: Suspect) -> dict[str, Any]:
    return {"reason": "suspected_duplicate",
            "details": {"duplicate_of": suspect.duplicate_of,
                        "matched_fields": ",".join(suspect.matched_fields),
                        "why": suspect.reason}}


def _history(conn: Connection, order_id: str, key: str, at: datetime, data: dict[str, Any]
             ) -> None:
    record_events(conn, [{"order_id": order_id, "event_key": key, "kind": key.split(":")[0],
                          "stage": "dedup", "status": None, "occurred_at": at, "data": data}])


def build(settings: Settings, registry: CollectorRegistry) -> DedupStage:
    return DedupStage(settings.dedup, registry)
