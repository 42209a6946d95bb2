from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from normalize.rates import RateTable
from normalize.shopify import map_order
from notify.process import (
    Providers,
    Route,
    Skip,
    idempotency_key,
    kind_of,
    quiet_until,
    retry_in,
    route,
    triggers,
    usable_phone,
)
from schemas.base import SHANGHAI
from schemas.events import OrderAccepted, OrderAllocated, OrderStatusChanged, Shipment, ShipmentLine
from schemas.order import Order, OrderStatus, Recipient
from tests.builders import shopify_fixture

AT = datetime(2026, 11, 11, 10, 0, tzinfo=SHANGHAI)
QUIET = (time(22, 0), time(8, 0))
ALL = Providers(sms=True, wechat="wechat_subscribe", webhook="https://erp.example/hook")


def order(phone: str | None = "13812345678", openid: str | None = None,
          status: OrderStatus = OrderStatus.PAID) -> Order:
    base = map_order(shopify_fixture(), shop="s", rates=RateTable.from_mapping({
        "USD": {"2020-01-01": "7.1"}}))
    recipient = (base.recipient or Recipient()).model_copy(update={"phone": phone})
    return base.model_copy(update={"recipient": recipient, "buyer_openid": openid,
                                   "status": status})


def status(s: OrderStatus, **kw: object) -> OrderStatusChanged:
    return OrderStatusChanged(order_id="SHOP1", status=s, at=AT, source="taobao", **kw)


def test_an_allocated_order_is_the_allocated_event() -> None:
    o = order()
    allocated = OrderAllocated(order=o, shipments=(Shipment(warehouse="HZ", lines=(
        ShipmentLine(line_no=0, sku="A", quantity=1),), reason="nearest"),), rule="r",
        allocated_at=AT)
    assert [(t.order_id, t.event) for t in triggers(allocated)] == [(o.id, "allocated")]


def test_an_accepted_paid_order_is_the_paid_event_at_its_payment_time() -> None:
    o = order()
    [t] = triggers(OrderAccepted(order=o, reason="unique"))
    assert t.event == "paid" and t.at == o.paid_at


def test_holds_and_reviews_notify_nobody() -> None:
    assert triggers(OrderAccepted(order=order(status=OrderStatus.REVIEW_HOLD),
                                  reason="unique")) == []
    assert triggers(status(OrderStatus.APPROVAL_HOLD)) == []
    assert triggers(status(OrderStatus.DUPLICATE)) == []


def test_a_shipment_carries_carrier_and_waybill() -> None:
    [t] = triggers(status(OrderStatus.SHIPPED, carrier="SF", waybill="SF1234567890"))
    assert (t.event, t.carrier, t.waybill) == ("shipped", "SF", "SF1234567890")


def test_a_received_return_is_its_own_event_and_qc_carries_the_grade() -> None:
    [received] = triggers(status(OrderStatus.RETURN_REQUESTED, milestone="return_received"))
    [graded] = triggers(status(OrderStatus.RETURNED, reason="QC grade B"))
    assert received.event == "return_received"
    assert (graded.event, graded.qc_grade) == ("returned", "B")


@pytest.mark.parametrize(("phone", "usable"), [
    ("13812345678", "13812345678"),
    ("+86 138-1234-5678", "13812345678"),
    ("8613812345678", "13812345678"),
    ("+1 (415) 555-0100", "14155550100"),
])
def test_plain_mobile_numbers_are_usable(phone: str, usable: str) -> None:
    assert usable_phone(phone) == usable


@pytest.mark.parametrize(("phone", "why"), [
    (None, "no phone"),
    ("", "no phone"),
    ("138****5678", "masked"),
    ("$Qm9hZ2Jp3wTn$AgAAAAOq7fYCBlp0mwD7kP2xVqL0cN8sYt4RuJm6hE1=$0$$", "ciphertext"),
    ("~AgAAAAOq7fYCBVp0mwCXb2Fw9QkLm4n1TzRyE0dVuH8=~Rf6mT2pa~0~~", "ciphertext"),
    ("#1fGb7d#", "ciphertext"),
    ("057188886666", "not a mobile"),
])
def test_masked_ciphertext_and_landline_phones_are_not_usable(phone: str | None,
                                                              why: str) -> None:
    result = usable_phone(phone)
    assert isinstance(result, Skip) and why in result.reason


def test_the_buyer_channel_prefers_wechat_then_sms_then_says_why_not() -> None:
    assert route("buyer", order(openid="oAbC"), ALL) == Route("wechat_subscribe", "oAbC")
    assert route("buyer", order(), ALL) == Route("aliyun_sms", "13812345678")
    nobody = route("buyer", order(phone="138****5678"), ALL)
    assert isinstance(nobody, Skip)
    assert "openid" in nobody.reason and "masked" in nobody.reason


def test_an_unconfigured_provider_is_a_recorded_skip() -> None:
    none = Providers()
    assert route("sms", order(), none) == Skip("SMS not configured")
    assert route("wechat", order(openid="o"), none) == Skip("WeChat messages not configured")
    assert route("webhook", order(), none) == Skip("no merchant webhook configured")
    assert route("log", order(phone=None), none) == Route("log", "log")


def test_quiet_hours_defer_to_eight_in_the_morning_gmt8() -> None:
    late = datetime(2026, 11, 11, 23, 30, tzinfo=SHANGHAI)
    early = datetime(2026, 11, 12, 7, 59, tzinfo=SHANGHAI)
    assert quiet_until(late, *QUIET) == datetime(2026, 11, 12, 8, 0, tzinfo=SHANGHAI)
    assert quiet_until(early, *QUIET) == datetime(2026, 11, 12, 8, 0, tzinfo=SHANGHAI)
    assert quiet_until(datetime(2026, 11, 12, 8, 0, tzinfo=SHANGHAI), *QUIET) is None
    assert quiet_until(datetime(2026, 11, 11, 21, 59, tzinfo=SHANGHAI), *QUIET) is None


def test_quiet_hours_are_judged_in_gmt8_whatever_the_clock_zone() -> None:
    utc_afternoon = datetime(2026, 11, 11, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    assert quiet_until(utc_afternoon, *QUIET) == datetime(2026, 11, 12, 8, 0, tzinfo=SHANGHAI)


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)))
def test_a_deferred_send_is_never_due_inside_quiet_hours(naive: datetime) -> None:
    now = naive.replace(tzinfo=SHANGHAI)
    until = quiet_until(now, *QUIET)
    if until is not None:
        assert until > now and until - now <= timedelta(hours=10)
        assert quiet_until(until, *QUIET) is None


def test_a_window_inside_one_day_and_an_empty_window() -> None:
    noon = datetime(2026, 11, 11, 12, 30, tzinfo=SHANGHAI)
    assert quiet_until(noon, time(12, 0), time(14, 0)) == noon.replace(hour=14, minute=0)
    assert quiet_until(noon, time(8, 0), time(8, 0)) is None


def test_backoff_doubles_is_capped_and_honours_the_providers_retry_after() -> None:
    assert [retry_in(n, 2.0, 30.0) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert retry_in(1, 2.0, 30.0, asked_s=60.0) == 60.0


def test_the_idempotency_key_is_stable_and_differs_per_channel() -> None:
    key = idempotency_key("TB1", "shipped", "buyer")
    assert key == idempotency_key("TB1", "shipped", "buyer") and len(key) == 32
    assert key != idempotency_key("TB1", "shipped", "webhook")
    assert key != idempotency_key("TB1", "delivered", "buyer")


def test_provider_kinds() -> None:
    assert [kind_of(p) for p in ("aliyun_sms", "wechat_subscribe", "wechat_template",
                                 "webhook", "log")] == ["sms", "wechat", "wechat", "webhook",
                                                        "log"]

