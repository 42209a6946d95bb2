from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.amazon import native_id, read, unwrap
from normalize import wechat
from normalize.amazon import map_order
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Order, OrderStatus
from tests.strategies import json_values

FIXTURES = Path(__file__).parents[1] / "fixtures"
SHOP = "amazon-na-tea"
RATES = RateTable.from_mapping(
    {"USD": {"2026-01-01": "7.10"}, "EUR": {"2026-01-01": "7.75"}, "JPY": {"2026-01-01": "0.0475"}}
)
EIGHT_HOURS = timedelta(hours=8)
UNSHIPPED = "order_unshipped"


def response(name: str = UNSHIPPED) -> dict[str, Any]:
    path = FIXTURES / "amazon" / f"{name}.json"
    body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return body


def payload(name: str = UNSHIPPED, **changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = response(name)["payload"]
    order.update(changes)
    return order


def mapped(name: str = UNSHIPPED, rates: RateTable = RATES, **changes: Any) -> Order:
    return map_order(payload(name, **changes), shop=SHOP, rates=rates)


def rejection(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        map_order(body, shop=SHOP, rates=RATES)
    return caught.value


def item(body: dict[str, Any], index: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = body["OrderItems"][index]
    return found


def test_the_amazon_order_id_is_kept_as_sent_with_the_amz_prefix() -> None:
    order = mapped()
    assert order.native_id == "112-9273645-3309821"
    assert order.id == "AMZ112-9273645-3309821"
    assert order.channel == "amazon"


def test_utc_z_times_are_expressed_at_plus_eight_on_the_next_beijing_day() -> None:
    order = mapped()
    assert order.created_at == datetime(2026, 3, 15, 0, 5, 9, tzinfo=SHANGHAI)
    assert order.created_at.utcoffset() == EIGHT_HOURS
    assert order.model_dump(mode="json")["created_at"] == "2026-03-15T00:05:09+08:00"
    assert order.updated_at == datetime(2026, 3, 15, 0, 36, 2, tzinfo=SHANGHAI)


def test_the_same_purchase_as_utc_z_and_as_unix_seconds_is_the_same_instant_and_wall_time() -> None:
    amazon = mapped()
    wx = wechat.map_order(
        json.loads((FIXTURES / "wechat" / "order_awaiting_shipment.json").read_text("utf-8"))[
            "order"
        ],
        shop="wx-tea-flagship",
        rates=RATES,
    )
    assert payload()["PurchaseDate"] == "2026-03-14T16:05:09Z"
    assert amazon.created_at == wx.created_at == datetime(2026, 3, 14, 16, 5, 9, tzinfo=UTC)
    wall_times = {o.model_dump(mode="json")["created_at"] for o in (amazon, wx)}
    assert wall_times == {"2026-03-15T00:05:09+08:00"}


def test_a_missing_last_update_date_falls_back_to_the_purchase_date() -> None:
    order = mapped(LastUpdateDate=None)
    assert order.updated_at == order.created_at


def test_a_naive_purchase_date_is_rejected_naming_it() -> None:
    assert rejection(payload(PurchaseDate="2026-03-14 16:05:09")).path == "PurchaseDate"


def test_the_unit_price_is_item_price_divided_by_quantity_exactly() -> None:
    first, second = mapped().lines
    assert first.quantity == 3
    assert first.unit_price == Decimal("29.99")
    assert str(first.unit_price) == "29.99"
    assert first.line_total == Decimal("85.47")  # 89.97 - 4.50 promotion
    assert (second.quantity, second.unit_price, second.line_total) == (
        1,
        Decimal("12.99"),
        Decimal("12.99"),
    )


def test_an_item_price_not_divisible_by_the_quantity_rounds_only_the_unit_price() -> None:
    body = payload()
    item(body)["ItemPrice"]["Amount"] = "10.00"
    item(body)["PromotionDiscount"]["Amount"] = "0.00"
    line = map_order(body, shop=SHOP, rates=RATES).lines[0]
    assert (line.unit_price, line.line_total) == (Decimal("3.33"), Decimal("10.00"))


def test_yen_amounts_without_decimals_stay_whole() -> None:
    order = mapped("order_canceled")
    assert order.currency == "JPY"
    assert order.lines[0].unit_price == Decimal("2250")
    assert order.model_dump(mode="json")["paid_amount"] == "4500"
    assert order.paid_cny == Decimal("213.75")


def test_order_amounts_are_exact_sums_of_the_items() -> None:
    order = mapped()
    assert order.currency == "USD"
    assert order.goods_amount == Decimal("102.96")
    assert order.shipping_amount == Decimal("5.99")
    assert order.discount_amount == Decimal("4.50")
    assert order.paid_amount == Decimal("111.18")
    assert order.model_dump(mode="json")["paid_amount"] == "111.18"


def test_a_shipping_discount_counts_as_discount() -> None:
    order = map_order(response("orders_page")["payload"]["Orders"][0], shop=SHOP, rates=RATES)
    assert order.shipping_amount == order.discount_amount == Decimal("5.99")
    assert order.goods_amount - order.discount_amount + order.shipping_amount == Decimal("55.97")


def test_usd_is_converted_to_cny_with_the_rate_table() -> None:
    assert mapped().paid_cny == Decimal("789.38")


def test_eur_is_converted_to_cny_with_the_rate_table() -> None:
    order = mapped("order_shipped")
    assert (order.currency, order.paid_amount) == ("EUR", Decimal("59.97"))
    assert order.paid_cny == Decimal("464.77")


@pytest.mark.parametrize(
    ("name", "currency", "new_rate", "expected"),
    [
        (UNSHIPPED, "USD", "7.20", Decimal("800.50")),
        ("order_shipped", "EUR", "7.80", Decimal("467.77")),
    ],
)
def test_the_rate_is_chosen_by_the_beijing_date_not_the_utc_date(
    name: str, currency: str, new_rate: str, expected: Decimal
) -> None:
    # Both orders were placed late in the UTC day, already the next day in Beijing.
    day = mapped(name).created_at.date().isoformat()
    assert day != payload(name)["PurchaseDate"][:10]
    rates = RateTable.from_mapping({currency: {"2026-01-01": "7.00", day: new_rate}})
    assert mapped(name, rates=rates).paid_cny == expected


def test_a_currency_without_a_rate_is_rejected_naming_it() -> None:
    body = payload()
    body["OrderTotal"]["CurrencyCode"] = "CHF"
    assert "CHF" in str(rejection(body))


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("order_pending", OrderStatus.PENDING_PAYMENT),
        (UNSHIPPED, OrderStatus.PAID),
        ("order_shipped", OrderStatus.SHIPPED),
        ("order_canceled", OrderStatus.CANCELLED),
    ],
)
def test_each_fixture_state_maps_to_its_canonical_status(name: str, status: OrderStatus) -> None:
    order = mapped(name)
    assert order.status == status
    assert order.native_status == payload(name)["OrderStatus"]


@pytest.mark.parametrize(
    ("native", "status", "paid"),
    [
        ("PendingAvailability", OrderStatus.PENDING_PAYMENT, False),
        ("Pending", OrderStatus.PENDING_PAYMENT, False),
        ("Unshipped", OrderStatus.PAID, True),
        ("PartiallyShipped", OrderStatus.SHIPPED, True),
        ("Shipped", OrderStatus.SHIPPED, True),
        ("InvoiceUnconfirmed", OrderStatus.SHIPPED, True),
        ("Canceled", OrderStatus.CANCELLED, False),
        ("Unfulfillable", OrderStatus.CANCELLED, False),
    ],
)
def test_every_order_status_maps_and_only_authorized_ones_have_paid_at(
    native: str, status: OrderStatus, paid: bool
) -> None:
    order = mapped(OrderStatus=native)
    assert order.status == status
    assert order.paid_at == (order.created_at if paid else None)


@pytest.mark.parametrize("native", ["Cancelled", "shipped", "", 3])
def test_an_unknown_order_status_is_rejected_naming_it(native: Any) -> None:
    assert rejection(payload(OrderStatus=native)).path == "OrderStatus"


def test_a_pending_order_without_prices_maps_with_zero_amounts_flagged_as_pending() -> None:
    order = mapped("order_pending")
    assert order.paid_at is None
    assert order.recipient is None
    assert order.currency == "USD"  # from the marketplace: no OrderTotal before payment
    assert order.paid_amount == order.goods_amount == order.paid_cny == 0
    assert [(line.sku, line.quantity, line.unit_price) for line in order.lines] == [
        ("TEA-LJ-250G", 3, Decimal(0))
    ]
    assert order.flags == ("cross_border", "amounts_pending")


def test_a_pending_order_that_carries_prices_keeps_them() -> None:
    order = mapped(OrderStatus="Pending", ShippingAddress=None)
    assert order.paid_amount == Decimal("111.18")
    assert order.lines[0].unit_price == Decimal("29.99")
    assert "amounts_pending" not in order.flags


def test_a_pre_order_is_flagged_presale() -> None:
    assert "presale" in mapped("order_pending", OrderStatus="PendingAvailability").flags
    assert "presale" in mapped(OrderType="Preorder").flags
    assert "presale" not in mapped().flags


def test_an_authorized_order_must_price_its_items() -> None:
    body = payload()
    del item(body, 1)["ItemPrice"]
    error = rejection(body)
    assert error.path == "OrderItems[1].ItemPrice"


@pytest.mark.parametrize("items", ["missing", None])
def test_an_order_without_order_items_says_get_order_items_must_be_attached(items: Any) -> None:
    body = payload(OrderItems=items)
    if items == "missing":
        del body["OrderItems"]
    error = rejection(body)
    assert error.path == "OrderItems"
    assert "getOrderItems" in str(error)


def test_an_order_with_an_empty_item_list_is_rejected() -> None:
    assert rejection(payload(OrderItems=[])).path == "OrderItems"


def test_the_recipient_is_the_shipping_address_as_sent() -> None:
    recipient = mapped().recipient
    assert recipient is not None
    assert recipient.name == "Jane Doe"
    assert recipient.phone == "+1 206-555-0142"
    assert recipient.country == "US"
    assert recipient.province == "WA"
    assert recipient.city == "Seattle"
    assert recipient.address == "1234 Maple Ave Apt 5B"
    assert recipient.postal_code == "98101-2345"
    assert mapped().flags == ("cross_border",)


def test_an_fba_order_is_flagged_and_has_no_phone() -> None:
    order = mapped("order_shipped")
    assert order.flags == ("fba", "cross_border")
    assert order.recipient is not None and order.recipient.phone is None
    assert order.lines[0].unit_price == Decimal("19.99")


def test_a_chinese_address_gets_full_region_names_and_is_not_cross_border() -> None:
    body = payload()
    body["ShippingAddress"].update(
        CountryCode="CN", StateOrRegion="广东", City="深圳", District="南山区"
    )
    order = map_order(body, shop=SHOP, rates=RATES)
    assert order.recipient is not None
    assert (order.recipient.province, order.recipient.city) == ("广东省", "深圳市")
    assert order.recipient.district == "南山区"
    assert order.flags == ()


def test_without_an_address_the_marketplace_tells_the_destination() -> None:
    assert mapped("order_canceled").flags == ("cross_border",)
    assert mapped(ShippingAddress=None, MarketplaceId="UNKNOWN").flags == ()


def test_cash_on_delivery_is_flagged() -> None:
    assert "cod" in mapped(PaymentMethod="COD").flags


def test_lines_use_the_seller_sku_and_the_asin() -> None:
    lines = mapped().lines
    assert [line.sku for line in lines] == ["TEA-LJ-250G", "CUP-GLS-01"]
    assert [line.channel_sku_id for line in lines] == ["B0C7KX2QJ4", "B0BZ9W1YQK"]
    assert lines[0].title == "West Lake Longjing Green Tea, 250 g Tin"


def break_item(key: str, value: Any, index: int = 0) -> dict[str, Any]:
    body = payload()
    item(body, index)[key] = value
    return body


def break_total(value: Any) -> dict[str, Any]:
    body = payload()
    body["OrderTotal"]["Amount"] = value
    return body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (payload(AmazonOrderId=None), "AmazonOrderId"),
        (payload(AmazonOrderId=1123309821), "AmazonOrderId"),
        (payload(AmazonOrderId="112 9273645"), "AmazonOrderId"),
        (payload(PurchaseDate=1773504309), "PurchaseDate"),
        (payload(LastUpdateDate="soon"), "LastUpdateDate"),
        (payload(OrderItems="B0C7KX2QJ4"), "OrderItems"),
        (payload(OrderItems=[5]), "OrderItems[0]"),
        (payload(OrderTotal="111.18"), "OrderTotal"),
        (payload(OrderTotal={"CurrencyCode": "USD"}), "OrderTotal.Amount"),
        (payload(OrderTotal={"Amount": "111.18"}), "OrderTotal.CurrencyCode"),
        (payload(OrderTotal={"CurrencyCode": "usd", "Amount": "1"}), "OrderTotal.CurrencyCode"),
        (break_total(111.18), "OrderTotal.Amount"),
        (break_total("NaN"), "OrderTotal.Amount"),
        (payload(ShippingAddress="Seattle"), "ShippingAddress"),
        (payload(MarketplaceId=7), "MarketplaceId"),
        (break_item("QuantityOrdered", 0), "OrderItems[0].QuantityOrdered"),
        (break_item("QuantityOrdered", "3"), "OrderItems[0].QuantityOrdered"),
        (break_item("QuantityOrdered", 3.0), "OrderItems[0].QuantityOrdered"),
        (
            break_item("ItemPrice", {"CurrencyCode": "USD", "Amount": 89.97}),
            "OrderItems[0].ItemPrice.Amount",
        ),
        (break_item("ItemPrice", "89.97"), "OrderItems[0].ItemPrice"),
        (
            break_item("PromotionDiscount", {"Amount": None}),
            "OrderItems[0].PromotionDiscount.Amount",
        ),
        (break_item("ShippingPrice", []), "OrderItems[0].ShippingPrice"),
        (break_item("SellerSKU", 12345), "OrderItems[0].SellerSKU"),
        (break_item("ASIN", ["B0C7KX2QJ4"]), "OrderItems[0].ASIN"),
    ],
)
def test_a_malformed_field_is_invalid_input_with_its_path(body: dict[str, Any], path: str) -> None:
    assert rejection(body).path == path


def test_a_payload_that_is_not_an_object_is_invalid_input() -> None:
    assert "expected an object" in str(rejection(["112-9273645-3309821"]))


def test_a_get_order_response_and_a_bare_order_unwrap_to_the_order() -> None:
    document = response()
    assert unwrap(document) == [document["payload"]]
    assert unwrap(document["payload"]) == [document["payload"]]
    assert native_id(unwrap(document)[0]) == "112-9273645-3309821"


def test_a_get_orders_response_unwraps_to_every_order() -> None:
    orders = unwrap(response("orders_page"))
    assert [native_id(order) for order in orders] == ["114-3941689-8772232", "113-2649301-7716243"]
    statuses = [map_order(order, shop=SHOP, rates=RATES).status for order in orders]
    assert statuses == [OrderStatus.SHIPPED, OrderStatus.PENDING_PAYMENT]


def test_a_saved_response_file_reads_unwraps_and_maps() -> None:
    documents = list(read(FIXTURES / "amazon" / "order_shipped.json"))
    (order,) = unwrap(documents[0].value)
    assert map_order(order, shop=SHOP, rates=RATES).id == "AMZ028-4751093-6628341"


def test_an_errors_response_is_invalid_input_with_the_code_and_message() -> None:
    document = {
        "errors": [
            {
                "code": "Unauthorized",
                "message": "Access to requested resource is denied.",
                "details": "The access token you provided has expired.",
            }
        ]
    }
    with pytest.raises(InvalidInput) as caught:
        unwrap(document)
    assert caught.value.path == "errors"
    assert "Unauthorized: Access to requested resource is denied." in str(caught.value)
    assert "expired" in str(caught.value)


def test_an_order_in_a_get_orders_page_without_its_items_is_rejected_naming_it() -> None:
    document = response("orders_page")
    del document["payload"]["Orders"][1]["OrderItems"]
    with pytest.raises(InvalidInput, match="getOrderItems") as caught:
        unwrap(document)
    assert caught.value.path == "payload.Orders[1].OrderItems"


def test_a_get_order_items_response_alone_is_refused() -> None:
    document = {
        "payload": {
            "AmazonOrderId": "112-9273645-3309821",
            "NextToken": None,
            "OrderItems": payload()["OrderItems"],
        }
    }
    with pytest.raises(InvalidInput, match="getOrderItems response"):
        unwrap(document)


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ("payload", None),
        ({"payload": None}, None),
        ({"payload": {"NextToken": "x"}}, None),
        ({"payload": {"Orders": {"AmazonOrderId": "112-9273645-3309821"}}}, "payload.Orders"),
        ({"payload": {"Orders": [7]}}, "payload.Orders[0]"),
        ({"errors": ["boom"]}, "errors"),
    ],
)
def test_anything_else_is_invalid_input_saying_what_was_expected(
    document: Any, path: str | None
) -> None:
    with pytest.raises(InvalidInput) as caught:
        unwrap(document)
    assert caught.value.path == path


@pytest.mark.parametrize("value", [None, 1123309821, "", "112 9273645", "112:9273645", "-1"])
def test_a_missing_or_malformed_amazon_order_id_is_invalid_input(value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        native_id({"AmazonOrderId": value})
    assert caught.value.path == "AmazonOrderId"


PARTS: dict[str, tuple[str | int, ...]] = {
    "order": (),
    "total": ("OrderTotal",),
    "address": ("ShippingAddress",),
    "item": ("OrderItems", 0),
    "item_price": ("OrderItems", 0, "ItemPrice"),
    "promotion": ("OrderItems", 0, "PromotionDiscount"),
}


def part(body: Any, keys: tuple[str | int, ...]) -> dict[str, Any]:
    for key in keys:
        body = body[key]
    target: dict[str, Any] = body
    return target


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from([UNSHIPPED, "order_pending", "order_shipped"]),
    where=st.sampled_from(sorted(PARTS)),
    index=st.integers(0, 100),
    value=json_values,
)
def test_any_value_in_any_field_either_maps_or_is_invalid_input(
    name: str, where: str, index: int, value: Any
) -> None:
    body = payload(name)
    try:
        target = part(body, PARTS[where])
    except KeyError:  # the pending fixture has no address, total or prices to break
        target = body
    keys = sorted(target)
    target[keys[index % len(keys)]] = value
    try:
        order = map_order(body, shop=SHOP, rates=RATES)
    except InvalidInput as e:
        assert str(e)
    else:
        assert order.id.startswith("AMZ")


def test_a_canceled_order_whose_items_amazon_zeroed_maps_to_a_cancelled_order() -> None:
    body = payload("order_canceled")
    for entry in body["OrderItems"]:
        entry["QuantityOrdered"] = 0
        entry.pop("ItemPrice", None)
    order = map_order(body, shop="s", rates=RATES)
    assert order.status is OrderStatus.CANCELLED
    assert [line.quantity for line in order.lines] == [0] * len(body["OrderItems"])


def test_a_zero_quantity_line_on_an_open_order_is_still_refused() -> None:
    with pytest.raises(InvalidInput, match="QuantityOrdered"):
        map_order(break_item("QuantityOrdered", 0), shop="s", rates=RATES)
