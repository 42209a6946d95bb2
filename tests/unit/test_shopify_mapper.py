from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.demo import generate_shopify_orders
from normalize.rates import DEFAULT_RATES, RateTable
from normalize.shopify import map_order
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Order, OrderStatus
from tests.strategies import json_values

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shopify" / "orders_create.json"
SHOP = "jsmith.myshopify.com"
RATES = RateTable.from_mapping({"USD": {"2026-01-01": "7.10"}})
EIGHT_HOURS = timedelta(hours=8)


def payload(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    body.update(changes)
    return body


def mapped(**changes: Any) -> Order:
    return map_order(payload(**changes), shop=SHOP, rates=RATES)


def rejection(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        map_order(body, shop=SHOP, rates=RATES)
    return caught.value


def test_a_big_id_is_kept_exactly_as_a_string() -> None:
    order = mapped()
    assert order.native_id == "820982911946154508"
    assert order.id == "SHOP820982911946154508"


def test_an_id_sent_as_a_digit_string_is_kept_as_sent() -> None:
    assert mapped(id="820982911946154509").native_id == "820982911946154509"


def test_times_from_a_minus_five_shop_are_expressed_at_plus_eight() -> None:
    order = mapped()
    assert order.created_at == datetime(2026, 1, 24, 12, 10, 15, tzinfo=SHANGHAI)
    assert order.created_at.utcoffset() == EIGHT_HOURS
    assert order.model_dump(mode="json")["created_at"] == "2026-01-24T12:10:15+08:00"
    assert order.updated_at == datetime(2026, 1, 24, 12, 10, 17, tzinfo=SHANGHAI)
    assert order.paid_at == order.created_at


def test_a_utc_z_time_is_accepted() -> None:
    order = mapped(created_at="2026-01-24T04:10:15Z", updated_at=None)
    assert order.created_at == datetime(2026, 1, 24, 12, 10, 15, tzinfo=SHANGHAI)
    assert order.updated_at == order.created_at


def test_a_naive_time_is_rejected_naming_the_field() -> None:
    error = rejection(payload(created_at="2026-01-23 23:10:15"))
    assert error.path == "created_at"
    assert "offset" in str(error)


def test_a_garbled_processed_at_is_rejected_naming_the_field() -> None:
    assert rejection(payload(processed_at="yesterday")).path == "processed_at"


def test_money_is_exact_decimal_in_the_shop_currency() -> None:
    order = mapped()
    assert order.currency == "USD"
    assert order.goods_amount == Decimal("248.00")
    assert order.discount_amount == Decimal("5.00")
    assert order.shipping_amount == Decimal("10.00")
    assert order.paid_amount == Decimal("267.58")
    assert order.model_dump(mode="json")["paid_amount"] == "267.58"


def test_usd_is_converted_to_cny_with_the_rate_table() -> None:
    assert mapped().paid_cny == Decimal("1899.82")


def test_the_cny_rate_is_chosen_by_the_beijing_date_of_payment() -> None:
    # Paid 23:10 on the 23rd in New York, which is already the 24th in Beijing.
    rates = RateTable.from_mapping({"USD": {"2026-01-01": "7.10", "2026-01-24": "7.20"}})
    assert map_order(payload(), shop=SHOP, rates=rates).paid_cny == Decimal("1926.58")


def test_a_currency_without_a_rate_is_rejected_naming_it() -> None:
    error = rejection(payload(currency="CHF"))
    assert "CHF" in str(error)


def test_a_cny_order_needs_no_rate() -> None:
    order = mapped(currency="CNY")
    assert order.paid_cny == order.paid_amount


def test_line_totals_subtract_their_allocated_discounts() -> None:
    lines = mapped().lines
    assert [line.sku for line in lines] == ["IPOD2008PINK", "IPOD2008BLACK"]
    assert [line.channel_sku_id for line in lines] == ["808950810", "457924702"]
    assert [line.quantity for line in lines] == [1, 2]
    assert [line.unit_price for line in lines] == [Decimal("199.00"), Decimal("24.50")]
    assert [line.line_total for line in lines] == [Decimal("194.99"), Decimal("48.01")]


@pytest.mark.parametrize("items", [None, [], "missing"])
def test_an_order_without_line_items_is_rejected_naming_the_field(items: Any) -> None:
    body = payload(line_items=items)
    if items == "missing":
        del body["line_items"]
    assert rejection(body).path == "line_items"


@pytest.mark.parametrize("sku", ["", None])
def test_an_empty_or_null_sku_becomes_none(sku: str | None) -> None:
    body = payload()
    body["line_items"][0]["sku"] = sku
    assert map_order(body, shop=SHOP, rates=RATES).lines[0].sku is None


def test_a_line_without_variant_has_no_channel_sku_id() -> None:
    body = payload()
    body["line_items"][1]["variant_id"] = None
    assert map_order(body, shop=SHOP, rates=RATES).lines[1].channel_sku_id is None


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_line_quantity_must_be_positive(quantity: int) -> None:
    body = payload()
    body["line_items"][1]["quantity"] = quantity
    assert rejection(body).path == "line_items[1].quantity"


@pytest.mark.parametrize(
    ("financial", "fulfillment", "cancelled_at", "expected"),
    [
        ("paid", None, None, OrderStatus.PAID),
        ("paid", "fulfilled", None, OrderStatus.SHIPPED),
        ("paid", "partial", None, OrderStatus.PAID),
        ("paid", None, "2026-01-24T08:00:00-05:00", OrderStatus.CANCELLED),
        ("refunded", "fulfilled", "2026-01-24T08:00:00-05:00", OrderStatus.CANCELLED),
        ("pending", None, None, OrderStatus.PENDING_PAYMENT),
        ("pending", "fulfilled", None, OrderStatus.SHIPPED),
        ("authorized", None, None, OrderStatus.PAID),
        ("partially_paid", None, None, OrderStatus.PAID),
        ("partially_refunded", None, None, OrderStatus.PAID),
        ("partially_refunded", "fulfilled", None, OrderStatus.SHIPPED),
        ("refunded", "fulfilled", None, OrderStatus.REFUNDED),
        ("voided", None, None, OrderStatus.CANCELLED),
    ],
)
def test_status_follows_cancellation_then_payment_then_fulfilment(
    financial: str, fulfillment: str | None, cancelled_at: str | None, expected: OrderStatus
) -> None:
    order = mapped(
        financial_status=financial, fulfillment_status=fulfillment, cancelled_at=cancelled_at
    )
    assert order.status == expected


def test_a_pending_order_awaits_payment_and_has_no_paid_at() -> None:
    order = mapped(financial_status="pending")
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert order.paid_at is None


def test_an_authorized_order_counts_as_paid_when_processed() -> None:
    order = mapped(financial_status="authorized", processed_at="2026-01-23T23:12:00-05:00")
    assert order.paid_at == datetime(2026, 1, 24, 12, 12, tzinfo=SHANGHAI)


def test_native_status_records_payment_fulfilment_and_cancellation() -> None:
    assert mapped().native_status == "paid/unfulfilled"
    cancelled = mapped(
        financial_status="refunded",
        fulfillment_status="restocked",
        cancelled_at="2026-01-24T08:00:00-05:00",
    )
    assert cancelled.native_status == "refunded/restocked/cancelled"


def test_an_unknown_financial_status_is_rejected() -> None:
    assert rejection(payload(financial_status="bartered")).path == "financial_status"


def test_the_recipient_is_kept_as_the_channel_sent_it() -> None:
    recipient = mapped().recipient
    assert recipient is not None
    assert recipient.name == "Steve Shipper"
    assert recipient.phone == "555-555-SHIP"
    assert recipient.country == "US"
    assert recipient.province == "Kentucky"
    assert recipient.city == "Shippington"
    assert recipient.district is None
    assert recipient.address == "123 Shipping Street Suite 100"
    assert recipient.postal_code == "40003"


def test_an_order_without_shipping_address_has_no_recipient_and_is_not_cross_border() -> None:
    order = mapped(shipping_address=None)
    assert order.recipient is None
    assert "cross_border" not in order.flags


def test_an_address_with_empty_lines_has_no_address() -> None:
    body = payload()
    body["shipping_address"].update(address1="", address2=None)
    recipient = map_order(body, shop=SHOP, rates=RATES).recipient
    assert recipient is not None and recipient.address is None


def test_a_foreign_address_is_cross_border_and_a_chinese_one_is_not() -> None:
    assert mapped().flags == ("cross_border",)
    body = payload()
    body["shipping_address"]["country_code"] = "CN"
    assert map_order(body, shop=SHOP, rates=RATES).flags == ()


def test_test_and_cash_on_delivery_orders_are_flagged() -> None:
    order = mapped(test=True, payment_gateway_names=["Cash on Delivery (COD)"])
    assert order.flags == ("test", "cod", "cross_border")
    assert "cod" in mapped(gateway="cash_on_delivery", payment_gateway_names=[]).flags


def test_the_buyer_note_is_kept_and_an_empty_one_is_none() -> None:
    assert mapped().buyer_note == "Please leave the parcel with the doorman"
    assert mapped(note="").buyer_note is None


def test_shipping_falls_back_to_shipping_lines_then_to_zero() -> None:
    assert mapped(total_shipping_price_set=None).shipping_amount == Decimal("10.00")
    assert mapped(total_shipping_price_set=None, shipping_lines=[]).shipping_amount == 0


def test_goods_fall_back_to_the_sum_of_line_prices() -> None:
    assert mapped(total_line_items_price=None).goods_amount == Decimal("248.00")


def test_a_missing_discount_is_zero() -> None:
    assert mapped(total_discounts=None).discount_amount == 0


def break_line(key: str, value: Any) -> dict[str, Any]:
    body = payload()
    body["line_items"][0][key] = value
    return body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (payload(id=None), "id"),
        (payload(id=8.2e17), "id"),
        (payload(id=True), "id"),
        (payload(total_price=267.58), "total_price"),
        (payload(total_price="lots"), "total_price"),
        (payload(total_price="NaN"), "total_price"),
        (payload(total_price="1e999999"), "total_price"),
        (payload(created_at="0001-01-01T00:00:00+08:00"), "created_at"),
        (payload(currency=None), "currency"),
        (payload(currency="DOLLARS"), "currency"),
        (payload(created_at=1737691815), "created_at"),
        (payload(line_items="two"), "line_items"),
        (payload(line_items=[5]), "line_items[0]"),
        (payload(shipping_address="Shippington"), "shipping_address"),
        (
            payload(total_shipping_price_set={"shop_money": None}),
            "total_shipping_price_set.shop_money",
        ),
        (payload(total_shipping_price_set=None, shipping_lines=[{}]), "shipping_lines[0].price"),
        (break_line("quantity", "2"), "line_items[0].quantity"),
        (break_line("quantity", 1.0), "line_items[0].quantity"),
        (break_line("price", None), "line_items[0].price"),
        (break_line("sku", 12345), "line_items[0].sku"),
        (break_line("variant_id", "v-1"), "line_items[0].variant_id"),
        (
            break_line("discount_allocations", [{"amount": None}]),
            "line_items[0].discount_allocations[0].amount",
        ),
    ],
)
def test_a_malformed_field_is_invalid_input_with_its_path(body: dict[str, Any], path: str) -> None:
    assert rejection(body).path == path


def test_a_payload_that_is_not_an_object_is_invalid_input() -> None:
    assert "expected an object" in str(rejection(["not", "an", "order"]))


demo_starts = st.datetimes(
    min_value=datetime(2026, 1, 2), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**32), start=demo_starts)
def test_every_demo_order_maps_and_its_amounts_add_up(n: int, seed: int, start: datetime) -> None:
    rates = RateTable.from_mapping(DEFAULT_RATES)
    for shop, body in generate_shopify_orders(n, seed=seed, start=start):
        order = map_order(body, shop=shop, rates=rates)
        gross = sum(line.unit_price * line.quantity for line in order.lines)
        net = sum(line.line_total for line in order.lines)
        assert order.native_id == str(body["id"])
        assert order.status == OrderStatus.PAID
        assert order.created_at.utcoffset() == EIGHT_HOURS
        assert gross == order.goods_amount
        assert net == order.goods_amount - order.discount_amount
        assert net + order.shipping_amount == order.paid_amount
        assert order.paid_cny >= order.paid_amount


ORDER_KEYS = sorted(payload())
LINE_KEYS = sorted(payload()["line_items"][0])
ADDRESS_KEYS = sorted(payload()["shipping_address"])


@settings(max_examples=300, deadline=None)
@given(
    where=st.sampled_from(["order", "line", "address"]),
    index=st.integers(0, 100),
    value=json_values,
)
def test_any_value_in_any_field_either_maps_or_is_invalid_input(
    where: str, index: int, value: Any
) -> None:
    body = payload()
    target, keys = {
        "order": (body, ORDER_KEYS),
        "line": (body["line_items"][0], LINE_KEYS),
        "address": (body["shipping_address"], ADDRESS_KEYS),
    }[where]
    target[keys[index % len(keys)]] = value
    try:
        order = map_order(body, shop=SHOP, rates=RATES)
    except InvalidInput as e:
        assert str(e)
    else:
        assert order.id.startswith("SHOP")
