from __future__ import annotations

from typing import Any

from sqlalchemy import text

from runtime.settings import Settings
from schemas.events import OrderNormalized, OrderStatusChanged
from schemas.order import OrderStatus
from schemas.topics import NORMALIZED, RAW, STATUS
from tests.builders import raw, shopify_fixture
from tests.stagekit import KafkaIO, run_stage


def _normalize(settings: Settings, *payloads: dict[str, Any]) -> list[OrderNormalized]:
    io = KafkaIO(settings)
    io.produce(RAW, [(f"shopify:s:{p['id']}", raw(p, delivery=f"d{i}"))
                     for i, p in enumerate(payloads)])
    run_stage("normalize", settings, io, io.read(RAW, expect=len(payloads)))
    out = io.read(NORMALIZED, expect=len(payloads))
    return [OrderNormalized.model_validate_json(r.value or b"") for r in out]


def test_a_shopify_order_becomes_a_canonical_order_row_with_lines_and_an_output(
    settings: Settings, engine: Any
) -> None:
    [out] = _normalize(settings, shopify_fixture())
    assert out.order.id == "SHOP820982911946154508"
    assert out.order.created_at.isoformat().endswith("+08:00")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, paid_amount, currency, document->>'native_id' "
                                "FROM orders WHERE id = 'SHOP820982911946154508'")).one()
        lines = conn.execute(text("SELECT sku, quantity FROM order_lines ORDER BY line_no")).all()
    assert (row[0], str(row[1]), row[2], row[3]) == ("paid", "267.58", "USD",
                                                     "820982911946154508")
    assert [tuple(line) for line in lines] == [("IPOD2008PINK", 1), ("IPOD2008BLACK", 2)]


def test_a_newer_version_updates_the_order_and_an_older_one_never_moves_it_back(
    settings: Settings, engine: Any
) -> None:
    paid = shopify_fixture(updated_at="2026-11-10T10:00:00-05:00")
    cancelled = shopify_fixture(updated_at="2026-11-10T11:00:00-05:00",
                                cancelled_at="2026-11-10T11:00:00-05:00")
    _normalize(settings, paid, cancelled)
    _normalize(settings, paid)  # a late redelivery of the older version
    with engine.connect() as conn:
        status, updated = conn.execute(text("SELECT status, updated_at FROM orders")).one()
        versions = conn.execute(text("SELECT count(*) FROM order_events")).scalar()
    assert status == "cancelled"
    assert updated.isoformat() == "2026-11-11T00:00:00+08:00"
    assert versions == 2


def test_replaying_the_same_raw_message_writes_nothing_twice(
    settings: Settings, engine: Any
) -> None:
    _normalize(settings, shopify_fixture())
    _normalize(settings, shopify_fixture())
    with engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("orders", "order_lines", "order_events")]
    assert counts == [1, 2, 1]


def _status(settings: Settings, *changes: OrderStatusChanged) -> None:
    io = KafkaIO(settings)
    io.produce(STATUS, [(c.order_id, c) for c in changes])
    run_stage("normalize", settings, io, io.read(STATUS, expect=len(changes)))


def test_a_channel_status_push_moves_a_known_order_and_never_back(
    settings: Settings, engine: Any
) -> None:
    _normalize(settings, shopify_fixture(updated_at="2026-11-10T10:00:00-05:00"))
    order_id = "SHOP820982911946154508"
    shipped = OrderStatusChanged(order_id=order_id, status=OrderStatus.SHIPPED,
                                 at="2026-11-11T01:00:00+08:00", source="shopify",
                                 reason="orders/fulfilled")
    stale_paid = OrderStatusChanged(order_id=order_id, status=OrderStatus.PAID,
                                    at="2026-11-11T00:30:00+08:00", source="shopify")
    _status(settings, shipped)
    _status(settings, stale_paid, shipped)  # late and repeated deliveries
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM orders WHERE id = :i"),
                              {"i": order_id}).scalar()
        history = conn.execute(text("SELECT kind, status FROM order_events WHERE order_id = :i "
                                    "ORDER BY id"), {"i": order_id}).all()
    assert status == "shipped"
    assert [tuple(h) for h in history] == [("normalized", "paid"), ("status_changed", "shipped"),
                                           ("status_changed", "paid")]


def test_a_status_push_for_an_order_not_seen_yet_changes_nothing(
    settings: Settings, engine: Any
) -> None:
    _status(settings, OrderStatusChanged(order_id="DY6930000000000000001",
                                         status=OrderStatus.PAID,
                                         at="2026-11-11T01:00:00+08:00", source="douyin"))
    with engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()  # noqa: S608
                  for t in ("orders", "order_events", "dead_letters")]
    assert counts == [0, 0, 0]
