"""One purchase reported by two channels, through normalize and dedup on the real broker and
Postgres; each run_stage call is a fresh worker (a restart between the reports)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from allocate.projection import add_warehouse, set_stock
from runtime.runner import Record
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.events import (
    DuplicateSuspected,
    OrderAccepted,
    OrderStatusChanged,
    RawOrderReceived,
)
from schemas.topics import ACCEPTED, NORMALIZED, RAW, REVIEW, STATUS, TopicSpec
from tests.builders import RECEIVED, one_purchase
from tests.stagekit import KafkaIO, run_stage

T0 = datetime(2026, 11, 11, 10, 21, 20, tzinfo=SHANGHAI)
PDD_ID, DY_ID = "261111-100000000000001", "6930000000000000001"


def report(settings: Settings, io: KafkaIO, channel: str, native_id: str, paid_at: datetime,
           delivery: str = "d1") -> None:
    """The channel's report goes through normalize, then dedup, each as a new worker."""
    payload = one_purchase(channel, order_id=native_id, paid_at=paid_at)
    envelope = RawOrderReceived(channel=channel, shop=f"{channel}-shop", native_id=native_id,
                                transport="poll", received_at=RECEIVED, delivery_id=delivery,
                                payload=payload)
    io.produce(RAW, [(f"{channel}:{channel}-shop:{native_id}", envelope)])
    run_stage("normalize", settings, io, _fresh(io, RAW))
    run_stage("dedup", settings, io, _fresh(io, NORMALIZED))


def _fresh(io: KafkaIO, spec: TopicSpec) -> list[Record]:
    """The one message of `spec` no stage run of this test has taken yet."""
    taken: set[tuple[str, int, int]] = io.__dict__.setdefault("taken", set())
    mine = sum(1 for t in taken if t[0] == io.name(spec))
    fresh = [r for r in io.read(spec, mine + 1) if (r.topic, r.partition, r.offset) not in taken]
    assert len(fresh) == 1, fresh
    taken.update((r.topic, r.partition, r.offset) for r in fresh)
    return fresh


def outputs(io: KafkaIO) -> tuple[list[OrderAccepted], list[DuplicateSuspected],
                                  list[OrderStatusChanged]]:
    accepted = [OrderAccepted.model_validate_json(r.value or b"")
                for r in io.read(ACCEPTED, 0, timeout=2)]
    review = [DuplicateSuspected.model_validate_json(r.value or b"")
              for r in io.read(REVIEW, 0, timeout=2)]
    status = [OrderStatusChanged.model_validate_json(r.value or b"")
              for r in io.read(STATUS, 0, timeout=2)]
    return accepted, review, status


def statuses(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, status FROM orders")).all())


def test_two_channels_two_minutes_apart_one_goes_on_one_waits_for_review(
    settings: Settings, engine: Engine
) -> None:
    io = KafkaIO(settings)
    report(settings, io, "douyin", DY_ID, T0)
    report(settings, io, "pdd", PDD_ID, T0 + timedelta(minutes=2))
    accepted, review, _ = outputs(io)
    assert [a.order.id for a in accepted] == ["DY" + DY_ID]
    [suspect] = review
    assert suspect.order.id == "PDD" + PDD_ID and suspect.duplicate_of == "DY" + DY_ID
    assert set(suspect.matched_fields) >= {"region", "skus", "paid_cny"}
    assert statuses(engine) == {"DY" + DY_ID: "paid", "PDD" + PDD_ID: "review_hold"}
    with engine.connect() as conn:
        item = conn.execute(text("SELECT order_id, matched_order_id, state FROM review_queue")
                            ).one()
        hold = conn.execute(text("SELECT hold FROM orders WHERE id = :i"),
                            {"i": "PDD" + PDD_ID}).scalar()
    assert tuple(item) == ("PDD" + PDD_ID, "DY" + DY_ID, "open")
    assert hold["reason"] == "suspected_duplicate"


def test_four_minutes_apart_both_are_accepted(settings: Settings, engine: Engine) -> None:
    io = KafkaIO(settings)
    report(settings, io, "douyin", DY_ID, T0)
    report(settings, io, "pdd", PDD_ID, T0 + timedelta(minutes=4))
    accepted, review, _ = outputs(io)
    assert sorted(a.order.id for a in accepted) == sorted(["DY" + DY_ID, "PDD" + PDD_ID])
    assert review == []


def test_the_later_one_in_event_time_is_held_even_when_it_arrived_first(
    settings: Settings, engine: Engine
) -> None:
    io = KafkaIO(settings)
    report(settings, io, "douyin", DY_ID, T0 + timedelta(minutes=2))  # arrives first, paid later
    report(settings, io, "pdd", PDD_ID, T0)
    accepted, review, status = outputs(io)
    # Douyin went on when it arrived; PDD's report shows it was the later purchase.
    assert sorted(a.order.id for a in accepted) == sorted(["DY" + DY_ID, "PDD" + PDD_ID])
    [suspect] = review
    assert (suspect.order.id, suspect.duplicate_of) == ("DY" + DY_ID, "PDD" + PDD_ID)
    assert [(s.order_id, s.status.value, s.source) for s in status] == [
        ("DY" + DY_ID, "review_hold", "dedup")]  # allocate releases its reservation on this
    assert statuses(engine) == {"DY" + DY_ID: "review_hold", "PDD" + PDD_ID: "paid"}


def test_one_order_delivered_five_times_is_accepted_once(settings: Settings, engine: Engine
                                                         ) -> None:
    io = KafkaIO(settings)
    for i in range(5):  # webhook redeliveries, poll overlaps: other delivery ids, same version
        report(settings, io, "douyin", DY_ID, T0, delivery=f"delivery-{i}")
    accepted, review, _ = outputs(io)
    assert [a.order.id for a in accepted] == ["DY" + DY_ID]
    assert review == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 1


def test_replaying_the_held_report_raises_nothing_new(settings: Settings, engine: Engine
                                                      ) -> None:
    io = KafkaIO(settings)
    report(settings, io, "douyin", DY_ID, T0)
    report(settings, io, "pdd", PDD_ID, T0 + timedelta(minutes=1))
    normalized = io.read(NORMALIZED, 2)
    run_stage("dedup", settings, io, normalized)  # the whole partition again, after a crash
    accepted, review, _ = outputs(io)
    assert {a.order.id for a in accepted} == {"DY" + DY_ID}
    assert {r.order.id for r in review} == {"PDD" + PDD_ID}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM review_queue")).scalar() == 1


def test_a_hold_after_allocation_gives_the_reservation_back(settings: Settings, engine: Engine
                                                            ) -> None:
    with engine.begin() as conn:
        add_warehouse(conn, "WH-SZ", "Suzhou", "江苏省", "苏州市", 10)
        for sku in ("DY-MUG-350-BLU", "TEA-GIFT-01"):
            set_stock(conn, "WH-SZ", sku, 10)
    io = KafkaIO(settings)
    report(settings, io, "douyin", DY_ID, T0 + timedelta(minutes=2))
    run_stage("allocate", settings, io, _fresh(io, ACCEPTED))
    assert statuses(engine)["DY" + DY_ID] == "allocated"
    report(settings, io, "pdd", PDD_ID, T0)  # the earlier purchase: Douyin's is the duplicate
    run_stage("allocate", settings, io, _fresh(io, STATUS) + _fresh(io, ACCEPTED))
    assert statuses(engine) == {"DY" + DY_ID: "review_hold", "PDD" + PDD_ID: "allocated"}
    with engine.connect() as conn:
        reserved = dict(conn.execute(text("SELECT sku, reserved FROM stock")).all())
        allocated = conn.execute(text("SELECT DISTINCT order_id FROM allocations")).scalars()
        allocated_ids = list(allocated)
    assert reserved == {"DY-MUG-350-BLU": 2, "TEA-GIFT-01": 1}  # PDD's only: Douyin's returned
    assert allocated_ids == ["PDD" + PDD_ID]
