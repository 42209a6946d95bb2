"""The stage runner: decode, process, project in one transaction, produce, then acknowledge.

Error policy (DESIGN section 4), in one place for every stage:
- invalid input (undecodable bytes, a contract violation, `InvalidInput` from a stage) →
  a `DeadLetter` on orders.dlq and a `dead_letters` row, counted; the partition moves on;
- `TransientError` (Postgres or broker unavailable) → retried with exponential backoff, a
  bounded number of times, then `StageHalted`: the worker stops and resumes from its last commit;
- an unexpected exception in a stage's pure per-message `prepare` is also dead-lettered (with
  its traceback logged): that code does no I/O, so the message is what triggered it, and one
  odd payload must not stop a partition; it can be replayed once the bug is fixed;
- anything else (in the batch's projection or produce) is a bug and propagates.

Whatever a message holds, its dead letter must fit where it goes: Postgres text cannot hold
U+0000, so an input with one is refused here (every stage writes text) and the dead letter's key
and reason are cleaned; the DLQ message carries at most ORIGINAL_ON_TOPIC original bytes, so a
message near the broker's size limit does not become a dead letter over it (the dead_letters row
keeps every byte, and `orderhub dlq replay` sends those).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Generic, Protocol, TypeVar

from pydantic import ValidationError
from sqlalchemy import Connection, Engine
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from runtime.db import in_transaction
from runtime.metrics import StageMetrics
from runtime.projection import record_dead_letters, record_offsets
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput, OrderhubError, TransientError
from schemas.events import DeadLetter, Event
from schemas.topics import DLQ, TopicSpec

log = logging.getLogger(__name__)
P = TypeVar("P")
ORIGINAL_ON_TOPIC = 256 * 1024
"""Original bytes a DLQ message carries (base64: a third more); under librdkafka's and faust's
1 MB default message limits with room for the rest."""
TEXT_LIMIT = 2000
"""Characters of a dead letter's key and reason: a reason may quote a field of any size."""
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
r"""A JSON `\u0000` escape that is not itself an escaped backslash followed by `u0000`."""


class StageHalted(OrderhubError):
    """Transient failures outlasted the retry budget: the worker must stop."""


@dataclass(frozen=True)
class Record:
    """One consumed Kafka message, as bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Emit:
    """An output: a value for a registry topic under a key."""

    topic: TopicSpec
    key: str
    value: Event


@dataclass(frozen=True)
class Context:
    """What a stage may know besides its input: the time of the batch and the settings."""

    now: datetime
    settings: Settings


@dataclass(frozen=True)
class Prepared(Generic[P]):
    record: Record
    item: P


class Stage(Protocol[P]):
    """What each stage's agent.py provides to the runner."""

    name: str
    sources: tuple[TopicSpec, ...]

    def prepare(self, event: Event, ctx: Context) -> P:
        """Pure per-message work; raise InvalidInput for input that can never be processed."""
        ...

    def project(self, conn: Connection, items: Sequence[P], ctx: Context) -> list[Emit]:
        """The batch's Postgres effects (one transaction, idempotent); returns the outputs.

        A stage may also define `committed()`, called on the event loop once the batch's
        transaction has committed (before its outputs are sent)."""
        ...


Send = Callable[[Sequence[Emit]], Awaitable[None]]


def now_in_shanghai() -> datetime:
    return datetime.now(SHANGHAI)


class StageRunner(Generic[P]):
    """Runs one stage's batches with the error policy; knows nothing about faust."""

    def __init__(
        self, stage: Stage[P], *, engine: Engine, send: Send, metrics: StageMetrics,
        settings: Settings, group: str, clock: Callable[[], datetime] = now_in_shanghai,
    ) -> None:
        """`send` delivers emits and returns once the broker acknowledged all of them;
        `group` is the consumer group whose offsets are tracked with the projection."""
        self.stage = stage
        self.engine = engine
        self.send = send
        self.metrics = metrics
        self.settings = settings
        self.group = group
        self.clock = clock
        prefix = settings.kafka.topic_prefix
        self._specs = {s.full_name(prefix): s for s in stage.sources}

    async def run_batch(self, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        ctx = Context(now=self.clock(), settings=self.settings)
        good, dead = self._prepare_all(records, ctx)
        prepared = time.perf_counter()
        write = partial(self._write, good, dead, records, ctx)
        emits = await self._retrying(lambda: asyncio.to_thread(in_transaction, self.engine, write))
        written = time.perf_counter()
        if (committed := getattr(self.stage, "committed", None)) is not None:
            committed()  # e.g. notify wakes its sender: the batch's rows are visible now
        outputs = [*emits, *(Emit(DLQ, d.key or "", _on_topic(d)) for d in dead)]
        await self._retrying(lambda: self.send(outputs))
        done = time.perf_counter()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: batch of %d: prepare %.1f ms, transaction %.1f ms, send %d %.1f ms",
                      self.stage.name, len(records), 1000 * (prepared - started),
                      1000 * (written - prepared), len(outputs), 1000 * (done - written))
        self._count(records, dead, outputs, done - started)

    def _prepare_all(
        self, records: Sequence[Record], ctx: Context
    ) -> tuple[list[P], list[DeadLetter]]:
        good: list[P] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                good.append(self.stage.prepare(self._decode(record), ctx))
            except (InvalidInput, ValidationError, UnicodeDecodeError) as e:
                dead.append(self._dead_letter(record, e, ctx))
            except Exception as e:
                log.exception("%s: unexpected error on %s[%d]@%d", self.stage.name,
                              record.topic, record.partition, record.offset)
                dead.append(self._dead_letter(record, _Unexpected(self.stage.name, e), ctx))
        return good, dead

    def _decode(self, record: Record) -> Event:
        if record.value is None:
            raise InvalidInput("empty message value (tombstone)", path="value")
        if b"\\u0000" in record.value and _NUL_ESCAPE.search(record.value):
            raise InvalidInput("a string holds U+0000 (NUL), which Postgres text cannot store",
                               path="value")
        return self._specs[record.topic].value.model_validate_json(record.value)

    def _dead_letter(self, record: Record, error: Exception, ctx: Context) -> DeadLetter:
        message = _clean(_describe(error))
        log.warning(
            "%s: dead-lettered %s[%d]@%d: %s", self.stage.name, record.topic, record.partition,
            record.offset, message,
        )
        return DeadLetter(
            stage=self.stage.name, topic=record.topic, partition=record.partition,
            offset=record.offset,
            key=_clean(record.key.decode("utf-8", "replace")) if record.key is not None else None,
            error_class=type(getattr(error, "error", error)).__name__, message=message,
            original=base64.b64encode(record.value or b"").decode("ascii"), at=ctx.now,
        )

    def _write(
        self, good: list[P], dead: list[DeadLetter], records: Sequence[Record], ctx: Context,
        conn: Connection,
    ) -> list[Emit]:
        started = time.perf_counter()
        record_dead_letters(conn, [_dead_row(d) for d in dead])
        emits = self.stage.project(conn, good, ctx) if good else []
        record_offsets(conn, self.group, _next_offsets(records))
        self.metrics.projection_seconds.observe(time.perf_counter() - started)
        return emits

    async def _retrying(self, attempt: Callable[[], Awaitable[list[Emit] | None]]) -> list[Emit]:
        policy = self.settings.stage
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(policy.retry_attempts),
            wait=wait_exponential(multiplier=0.2, max=policy.retry_max_wait_s),
            before_sleep=self._on_retry,
        )
        try:
            async for call in retrying:
                with call:
                    return await attempt() or []
        except RetryError as e:
            cause = e.last_attempt.exception()
            raise StageHalted(
                f"{self.stage.name}: giving up after {policy.retry_attempts} attempts: {cause}"
            ) from cause
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _on_retry(self, state: object) -> None:
        self.metrics.retries.inc()
        log.warning("%s: transient failure, retrying: %s", self.stage.name,
                    getattr(getattr(state, "outcome", None), "exception", lambda: None)())

    def _count(
        self, records: Sequence[Record], dead: list[DeadLetter], outputs: list[Emit],
        seconds: float,
    ) -> None:
        m = self.metrics
        m.batch_size.observe(len(records))
        m.batch_seconds.observe(seconds)
        m.consumed.labels(outcome="ok").inc(len(records) - len(dead))
        if dead:
            m.consumed.labels(outcome="dead_lettered").inc(len(dead))
        for d in dead:
            m.dead_lettered.labels(error_class=d.error_class).inc()
        for out in outputs:
            m.produced.labels(topic=out.topic.name).inc()


class _Unexpected(Exception):
    """Wraps a bug's exception so the dead letter names it and says what it is."""

    def __init__(self, stage: str, error: Exception) -> None:
        self.error = error
        super().__init__(f"unexpected {type(error).__name__} in {stage} (a bug: replay this "
                         f"message once it is fixed): {error}")


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        path = ".".join(str(p) for p in first["loc"]) or "value"
        more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
        return f"{path}: {first['msg']}{more}"
    return str(error)


def _clean(text: str) -> str:
    """Text Postgres can store, of bounded length."""
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= TEXT_LIMIT else f"{text[:TEXT_LIMIT]}… ({len(text)} characters)"


def _on_topic(d: DeadLetter) -> DeadLetter:
    """The dead letter as orders.dlq carries it: the original cut to ORIGINAL_ON_TOPIC bytes."""
    original = base64.b64decode(d.original)
    if len(original) <= ORIGINAL_ON_TOPIC:
        return d
    return d.model_copy(update={
        "original": base64.b64encode(original[:ORIGINAL_ON_TOPIC]).decode("ascii"),
        "message": f"{d.message} [original cut to its first {ORIGINAL_ON_TOPIC} of "
                   f"{len(original)} bytes here; the dead_letters row keeps all of them]",
    })


def _dead_row(d: DeadLetter) -> dict[str, object]:
    return {
        "stage": d.stage, "topic": d.topic, "partition": d.partition, "offset": d.offset,
        "key": d.key, "error_class": d.error_class, "message": d.message,
        "original": base64.b64decode(d.original),
    }


def _next_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    marks: dict[tuple[str, int], int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        marks[tp] = max(marks.get(tp, 0), r.offset + 1)
    return marks
