"""The sender: works the send log until stopped, inside the notify worker.

Each round claims due rows (committed before any provider call), calls the providers
concurrently — each paced by its own token bucket — then records every outcome in one
transaction and produces what finished: `BuyerNotified` on orders.notified, and for a message
given up also a `DeadLetter` on orders.dlq (with a `dead_letters` row). Produce first, then mark
emitted: a crash in between produces the same outputs again, which consumers handle by key.

Outcomes: accepted → `sent`; Throttled, TransientError → `pending` again after an exponential
backoff (or the provider's retry-after), until `max_attempts`, then `failed`; ChannelError (a
bad number, an unapproved template, the buyer did not subscribe) → `failed` at once. An SMS due
inside the quiet hours waits for their end and costs no attempt.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from notify import projection
from notify.channels import Provider
from notify.metrics import NotifyMetrics
from notify.process import kind_of, quiet_until, retry_in
from runtime.db import in_transaction
from runtime.projection import record_dead_letters
from runtime.runner import Emit
from runtime.settings import NotifySettings
from schemas.errors import ChannelError, Throttled, TransientError
from schemas.events import BuyerNotified, DeadLetter
from schemas.topics import DLQ, NOTIFIED

log = logging.getLogger(__name__)
Send = Callable[[Sequence[Emit]], Awaitable[None]]
SEND_LOG_TOPIC = "notifications"  # what a failed send's dead letter names as its source


@dataclass(frozen=True)
class Outcome:
    row: Mapping[str, Any]
    state: str  # sent | again | failed
    attempts: int
    due_at: datetime | None = None
    error: str | None = None
    reason: str | None = None  # bounded label
    provider_ref: str | None = None


class Sender:
    """One sender per notify worker; several workers' senders never take the same row."""

    def __init__(self, engine: Engine, settings: NotifySettings, providers: dict[str, Provider],
                 send: Send, metrics: NotifyMetrics, clock: Callable[[], datetime],
                 wake: asyncio.Event | None = None) -> None:
        """`wake`: set by the stage when it committed new rows; an idle sender waits for it
        (or `poll_s`, for retries coming due and other workers' rows) instead of sleeping."""
        self.engine = engine
        self.wake = wake or asyncio.Event()
        self.settings = settings
        self.providers = providers
        self.send = send
        self.metrics = metrics
        self.clock = clock

    async def run(self, stop: asyncio.Event, grace_s: float = 15.0) -> None:
        """Rounds until `stop`; idle rounds wait `poll_s`. Cancelled mid-round (the worker is
        stopping), the round still records what the providers accepted, so a restart does not
        send it again."""
        while not stop.is_set():
            current = asyncio.ensure_future(self.round())
            try:
                busy = await asyncio.shield(current)
            except asyncio.CancelledError:
                await asyncio.wait_for(current, grace_s)
                raise
            except TransientError as e:
                log.warning("notify sender: %s; trying again shortly", e)
                busy = 0
            if not busy:
                await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until the stage planned more, the worker stops, or `poll_s` passed."""
        if self.wake.is_set():
            self.wake.clear()
            return
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(waits, timeout=self.settings.poll_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        self.wake.clear()

    async def round(self) -> int:
        """Claim, send, record, emit; the number of rows claimed or emitted."""
        s = self.settings
        rows = await self._db(lambda c: projection.claim_due(c, self.clock(), s.batch, s.lease_s))
        self.metrics.outstanding.set(len(rows))
        finished: list[dict[str, Any]] | None = None
        if rows:
            outcomes = await asyncio.gather(*(self._attempt(r) for r in rows))
            finished = await self._db(lambda c: self._record(c, outcomes))
        return len(rows) + await self.emit_finished(finished)

    async def emit_finished(self, rows: list[dict[str, Any]] | None = None) -> int:
        """Produce BuyerNotified (and dead letters) for finished rows not yet on the topic
        (`rows`: already read in the transaction that recorded the round)."""
        if rows is None:
            rows = await self._db(self._unemitted)
        if not rows:
            return 0
        await self.send([e for r in rows for e in outputs(r)])
        at = self.clock()
        await self._db(lambda c: projection.mark_emitted(c, [r["id"] for r in rows], at))
        return len(rows)

    async def _attempt(self, row: Mapping[str, Any]) -> Outcome:
        s = self.settings
        attempts = row["attempts"]
        provider = self.providers.get(row["provider"])
        if provider is None:  # configuration changed since the stage routed it
            return Outcome(row, "failed", attempts, error=f"provider {row['provider']} is not "
                           "configured in this worker", reason="provider_not_configured")
        if kind_of(provider.name) in s.quiet_channels:
            until = quiet_until(self.clock(), s.quiet_start, s.quiet_end)
            if until is not None:
                self.metrics.deferred.labels(channel=row["channel"], reason="quiet_hours").inc()
                return Outcome(row, "again", attempts, due_at=until, reason="quiet_hours")
        await provider.limiter.acquire()
        attempts += 1
        started = time.perf_counter()
        try:
            ref = await provider.send(row)
        except Throttled as e:
            return self._again(row, provider.name, attempts, e, "throttled", e.retry_after_s)
        except TransientError as e:
            return self._again(row, provider.name, attempts, e, "transient", None)
        except ChannelError as e:
            return Outcome(row, "failed", attempts, error=str(e), reason=f"refused:{e.code}")
        finally:
            self.metrics.provider_seconds.labels(provider=provider.name).observe(
                time.perf_counter() - started)
        return Outcome(row, "sent", attempts, provider_ref=ref)

    def _again(self, row: Mapping[str, Any], provider: str, attempts: int, error: Exception,
               reason: str, asked_s: float | None) -> Outcome:
        s = self.settings
        if attempts >= s.max_attempts:
            return Outcome(row, "failed", attempts, reason="retries_exhausted",
                           error=f"gave up after {attempts} attempts: {error}")
        self.metrics.retried.labels(provider=provider, reason=reason).inc()
        self.metrics.deferred.labels(channel=row["channel"], reason=reason).inc()
        delay = retry_in(attempts, s.backoff_s, s.max_backoff_s, asked_s)
        return Outcome(row, "again", attempts, error=str(error), reason=reason,
                       due_at=self.clock() + timedelta(seconds=delay))

    def _record(self, conn: Connection, outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
        """The round's outcomes in one statement; returns the finished rows to emit."""
        now = self.clock()
        results = []
        for o in outcomes:
            row = o.row
            labels = {"channel": row["channel"], "provider": row["provider"]}
            state = {"again": "pending"}.get(o.state, o.state)
            error = (o.error or "failed") if o.state == "failed" else o.error
            results.append({"id": row["id"], "state": state, "attempts": o.attempts,
                            "ref": o.provider_ref, "error": error, "due_at": o.due_at})
            if o.state == "sent":
                self.metrics.sent.labels(**labels).inc()
            elif o.state == "failed":
                self.metrics.failed.labels(**labels, reason=o.reason or "failed").inc()
                log.warning("notify %s %s via %s failed: %s", row["order_id"], row["event"],
                            row["provider"], o.error)
        projection.finish(conn, now, results)
        record_dead_letters(conn, [_dead_row(o.row, o.error or "", now)
                                   for o in outcomes if o.state == "failed"])
        return self._unemitted(conn)

    def _unemitted(self, conn: Connection) -> list[dict[str, Any]]:
        return projection.unemitted(conn, self.settings.batch * 4)

    async def _db(self, work: Callable[[Connection], Any]) -> Any:
        return await asyncio.to_thread(in_transaction, self.engine, work)


def outputs(row: Mapping[str, Any]) -> list[Emit]:
    """What a finished row puts on the topics: its BuyerNotified, and a dead letter if failed."""
    at = row["finished_at"] or row["sent_at"] or row["claimed_at"]
    reason = row["skip_reason"] if row["state"] == "skipped" else row["last_error"]
    notified = BuyerNotified(
        order_id=row["order_id"], event=row["event"], channel=row["channel"],
        message=row["message"], sent_at=at, outcome=row["state"],
        provider=row["provider"] if row["state"] != "skipped" else None,
        reason=reason if row["state"] != "sent" else None, attempts=row["attempts"])
    emits = [Emit(NOTIFIED, row["order_id"], notified)]
    if row["state"] == "failed":
        dead = DeadLetter(
            stage="notify", topic=SEND_LOG_TOPIC, partition=0, offset=row["id"],
            key=row["order_id"], error_class="NotificationFailed", message=reason or "failed",
            original=base64.b64encode(_original(row)).decode("ascii"), at=at)
        emits.append(Emit(DLQ, row["order_id"], dead))
    return emits


def _original(row: Mapping[str, Any]) -> bytes:
    """The failed send as JSON, without the buyer's address (phone/openid)."""
    keep = ("id", "order_id", "event", "channel", "provider", "template", "params",
            "idempotency_key", "attempts", "last_error")
    return json.dumps({k: row[k] for k in keep if k in row}, ensure_ascii=False,
                      default=str).encode()


def _dead_row(row: Mapping[str, Any], error: str, at: datetime) -> dict[str, object]:
    return {"stage": "notify", "topic": SEND_LOG_TOPIC, "partition": 0, "offset": row["id"],
            "key": row["order_id"], "error_class": "NotificationFailed",
            "message": error or "failed", "original": _original(row)}
