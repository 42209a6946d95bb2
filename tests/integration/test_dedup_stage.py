from __future__ import annotations

from typing import Any

from sqlalchemy import text

from normalize.process import normalize
from normalize.rates import RateTable
from runtime.settings import Settings
from schemas.events import OrderAccepted, OrderNormalized
from schemas.topics import ACCEPTED, NORMALIZED
from tests.builders import raw, shopify_fixture
from tests.stagekit import KafkaIO, run_stage


def _normalized(settings: Settings, **changes: Any) -> OrderNormalized:
    order = normalize(raw(shopify_fixture(**changes)), RateTable.from_mapping(settings.rates))
    return OrderNormalized(order=order, delivery_id="d", received_at=order.created_at)


def test_the_same_order_delivered_three_times_is_accepted_once(
    settings: Settings, engine: Any
) -> None:
    io = KafkaIO(settings)
    n = _normalized(settings)
    io.produce(NORMALIZED, [(n.order.id, n)] * 3)
    run_stage("dedup", settings, io, io.read(NORMALIZED, expect=3))
    out = [OrderAccepted.model_validate_json(r.value or b"") for r in io.read(ACCEPTED, expect=3)]
    assert {(a.order.id, a.reason) for a in out} == {(n.order.id, "unique")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accepted_orders")).scalar() == 1


def test_a_later_version_of_an_accepted_order_is_an_update_not_a_new_order(
    settings: Settings, engine: Any
) -> None:
    io = KafkaIO(settings)
    first = _normalized(settings)
    later = _normalized(settings, updated_at="2026-12-01T10:00:00-05:00", note="leave at door")
    io.produce(NORMALIZED, [(first.order.id, first)])
    run_stage("dedup", settings, io, io.read(NORMALIZED, expect=1))
    io.produce(NORMALIZED, [(later.order.id, later)])
    records = io.read(NORMALIZED, expect=2)  # same key → same partition, in offset order
    run_stage("dedup", settings, io, records[1:])
    reasons = sorted(OrderAccepted.model_validate_json(r.value or b"").reason
                     for r in io.read(ACCEPTED, expect=2))
    assert reasons == ["unique", "update"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accepted_orders")).scalar() == 1
