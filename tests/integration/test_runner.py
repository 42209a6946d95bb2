from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, text

from runtime.db import make_engine
from runtime.metrics import build_stage_metrics
from runtime.runner import Context, Emit, Record, StageHalted, StageRunner
from runtime.settings import Settings
from schemas.errors import TransientError
from schemas.events import DeadLetter, Event, OrderNormalized
from schemas.topics import DLQ, NORMALIZED, RAW
from tests.builders import raw, shopify_fixture
from tests.stagekit import KafkaIO, run_stage


def test_malformed_input_goes_to_the_dlq_with_reason_and_bytes_and_the_rest_is_processed(
    settings: Settings, engine: Any
) -> None:
    io = KafkaIO(settings)
    good = raw(shopify_fixture())
    io.produce(RAW, [("shopify:s:1", b'{"not json'), ("shopify:s:2", good),
                     ("shopify:s:3", raw(shopify_fixture(), channel="ebay"))])
    records = io.read(RAW, expect=3)

    run_stage("normalize", settings, io, records)

    letters = [DeadLetter.model_validate_json(r.value or b"") for r in io.read(DLQ, expect=2)]
    assert sorted(d.key or "" for d in letters) == ["shopify:s:1", "shopify:s:3"]
    by_key = {d.key: d for d in letters}
    assert base64.b64decode(by_key["shopify:s:1"].original) == b'{"not json'
    assert "Invalid JSON" in by_key["shopify:s:1"].message
    assert "unknown channel 'ebay'" in by_key["shopify:s:3"].message
    assert {d.stage for d in letters} == {"normalize"}
    assert len(io.read(NORMALIZED, expect=1)) == 1
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT key, error_class, original FROM dead_letters "
                                 "ORDER BY key")).all()
        tracked = conn.execute(text("SELECT sum(next_offset) FROM consumer_offsets")).scalar()
    assert [(r.key, r.error_class) for r in rows] == [
        ("shopify:s:1", "ValidationError"), ("shopify:s:3", "InvalidInput")]
    assert rows[0].original == b'{"not json'
    marks: dict[int, int] = {}
    for r in records:
        marks[r.partition] = max(marks.get(r.partition, 0), r.offset + 1)
    assert tracked == sum(marks.values())


class FlakyStage:
    """A stage whose projection fails transiently a given number of times."""

    name = "flaky"
    sources = (NORMALIZED,)

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def prepare(self, event: Event, ctx: Context) -> Event:
        return event

    def project(self, conn: Connection, items: Sequence[Event], ctx: Context) -> list[Emit]:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientError("database restarting")
        conn.execute(text("INSERT INTO accepted_orders VALUES ('X1', 'd', now())"))
        return [Emit(NORMALIZED, "X1", item) for item in items]


def _flaky_runner(settings: Settings, stage: FlakyStage, sent: list[Emit]) -> StageRunner[Any]:
    async def send(emits: Sequence[Emit]) -> None:
        sent.extend(emits)

    assert settings.database.url
    return StageRunner(stage, engine=make_engine(settings.database.url), send=send,
                       metrics=build_stage_metrics("flaky", CollectorRegistry()),
                       settings=settings, group="g-flaky")


def _normalized_record(settings: Settings) -> Record:
    from normalize.process import normalize
    from normalize.rates import RateTable

    order = normalize(raw(shopify_fixture()), RateTable.from_mapping(settings.rates))
    value = OrderNormalized(order=order, delivery_id="d", received_at=order.created_at)
    return Record(NORMALIZED.full_name(settings.kafka.topic_prefix), 0, 41, b"k",
                  value.model_dump_json().encode())


def test_transient_errors_are_retried_and_then_the_batch_completes(
    settings: Settings, engine: Any
) -> None:
    stage, sent = FlakyStage(failures=2), []
    asyncio.run(_flaky_runner(settings, stage, sent).run_batch([_normalized_record(settings)]))
    assert stage.calls == 3
    assert len(sent) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT next_offset FROM consumer_offsets")).scalar() == 42


def test_transient_errors_beyond_the_budget_halt_the_stage_and_commit_nothing(
    settings: Settings, engine: Any
) -> None:
    stage, sent = FlakyStage(failures=99), []
    with pytest.raises(StageHalted, match="giving up after 3 attempts"):
        asyncio.run(_flaky_runner(settings, stage, sent).run_batch([_normalized_record(settings)]))
    assert sent == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM consumer_offsets")).scalar() == 0


def test_postgres_unreachable_halts_the_stage_after_bounded_retries(settings: Settings) -> None:
    down = settings.model_copy(update={"database": settings.database.model_copy(
        update={"url": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"})})
    io = KafkaIO(down)
    with pytest.raises(StageHalted, match="Postgres unavailable"):
        run_stage("dedup", down, io, [_normalized_record(settings)])


def test_a_bug_in_a_stage_propagates_instead_of_being_dead_lettered(settings: Settings) -> None:
    class Buggy(FlakyStage):
        def project(self, conn: Connection, items: Sequence[Event], ctx: Context) -> list[Emit]:
            raise KeyError("oops")

    with pytest.raises(KeyError):
        asyncio.run(_flaky_runner(settings, Buggy(0), []).run_batch(
            [_normalized_record(settings)]))


def test_dead_letter_row_and_offsets_are_written_in_the_same_transaction_as_the_projection(
    settings: Settings, engine: Any
) -> None:
    class FailsAfterWriting(FlakyStage):
        def project(self, conn: Connection, items: Sequence[Event], ctx: Context) -> list[Emit]:
            conn.execute(text("INSERT INTO accepted_orders VALUES ('Y', 'd', now())"))
            raise RuntimeError("crash mid-batch")

    bad = Record(NORMALIZED.full_name(settings.kafka.topic_prefix), 1, 7, b"k", b"[]")
    with pytest.raises(RuntimeError):
        asyncio.run(_flaky_runner(settings, FailsAfterWriting(0), []).run_batch(
            [bad, _normalized_record(settings)]))
    with engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("dead_letters", "accepted_orders", "consumer_offsets")]
    assert counts == [0, 0, 0]


def test_an_unexpected_error_on_one_message_dead_letters_it_and_the_batch_goes_on(
    settings: Settings, engine: Any
) -> None:
    class PicksOne(FlakyStage):
        def prepare(self, event: Event, ctx: Context) -> Event:
            if isinstance(event, OrderNormalized) and event.delivery_id == "poison":
                raise KeyError("shipping_lines")
            return event

    good = _normalized_record(settings)
    value = OrderNormalized.model_validate_json(good.value or b"")
    poison = Record(good.topic, 2, 9, b"p", value.model_copy(
        update={"delivery_id": "poison"}).model_dump_json().encode())
    sent: list[Emit] = []
    asyncio.run(_flaky_runner(settings, PicksOne(0), sent).run_batch([poison, good]))
    letters = [e.value for e in sent if e.topic is DLQ]
    assert [(d.error_class, d.offset) for d in letters] == [("KeyError", 9)]  # type: ignore[union-attr]
    assert "unexpected KeyError in flaky" in letters[0].message  # type: ignore[union-attr]
    assert [e.topic for e in sent].count(NORMALIZED) == 1
