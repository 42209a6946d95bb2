from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.wechat import native_id, read, unwrap
from normalize.rates import RateTable
from normalize.wechat import map_order
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Order, OrderStatus
from tests.strategies import json_values

FIXTURES = Path(__file__).parents[1] / "fixtures" / "wechat"
SHOP = "wx-tea-flagship"
RATES = RateTable.from_mapping({"USD": {"2026-01-01": "7.10"}})
EIGHT_HOURS = timedelta(hours=8)
PAID = "order_awaiting_shipment"


def response(name: str = PAID) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return body


def payload(name: str = PAID, **changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = response(name)["order"]
    order.update(changes)
    return order


def mapped(name: str = PAID, **changes: Any) -> Order:
    return map_order(payload(name, **changes), shop=SHOP, rates=RATES)


def rejection(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        map_order(body, shop=SHOP, rates=RATES)
    return caught.value


def detail(body: dict[str, Any]) -> dict[str, Any]:
    part: dict[str, Any] = body["order_detail"]
    return part


def test_a_big_order_id_is_kept_exactly_as_a_string() -> None:
    order = mapped()
    assert order.native_id == "3705115058471208928"
    assert order.id == "WX3705115058471208928"
    assert order.channel == "wechat"
    assert mapped(order_id=3705115058471208928).native_id == "3705115058471208928"


def test_unix_seconds_become_beijing_times_at_plus_eight() -> None:
    order = mapped()
    assert order.created_at == datetime(2026, 3, 14, 16, 5, 9, tzinfo=UTC)
    assert order.created_at.utcoffset() == EIGHT_HOURS
    assert order.model_dump(mode="json")["created_at"] == "2026-03-15T00:05:09+08:00"
    assert order.paid_at == datetime(2026, 3, 15, 0, 5, 41, tzinfo=SHANGHAI)
    assert order.updated_at == datetime(2026, 3, 15, 0, 5, 41, tzinfo=SHANGHAI)


def test_unix_seconds_sent_as_digit_strings_read_the_same() -> None:
    assert mapped(create_time="1773504309").created_at == mapped().created_at


def test_a_missing_update_time_falls_back_to_the_creation_time() -> None:
    order = mapped(update_time=None)
    assert order.updated_at == order.created_at


def test_fen_integers_become_exact_yuan() -> None:
    order = mapped()
    assert order.currency == "CNY"
    assert order.goods_amount == Decimal("295.00")
    assert order.shipping_amount == Decimal("8.00")
    assert order.discount_amount == Decimal("10.00")
    assert order.paid_amount == Decimal("293.00")
    assert order.paid_cny == Decimal("293.00")
    assert order.model_dump(mode="json")["paid_amount"] == "293.00"


def test_lines_carry_the_merchant_sku_the_sku_id_and_fen_prices_as_yuan() -> None:
    lines = mapped().lines
    assert [line.sku for line in lines] == ["TEA-LJ-250G", "CUP-GLS-01"]
    assert [line.channel_sku_id for line in lines] == ["2345678901", "2345678902"]
    assert [line.title for line in lines] == ["明前龙井 250g 罐装", "双层玻璃茶杯 350ml"]
    assert [line.quantity for line in lines] == [2, 1]
    assert [line.unit_price for line in lines] == [Decimal("128.00"), Decimal("39.00")]
    assert [line.line_total for line in lines] == [Decimal("246.00"), Decimal("39.00")]


def test_a_line_without_real_price_totals_its_sale_price() -> None:
    line = mapped("order_shipped").lines[0]
    assert (line.quantity, line.unit_price, line.line_total) == (
        3,
        Decimal("168.00"),
        Decimal("504.00"),
    )


def test_the_sku_falls_back_to_sku_code_and_then_to_none() -> None:
    assert mapped("order_shipped").lines[0].sku == "PUER-357"
    body = payload()
    item = detail(body)["product_infos"][0]
    item.update(out_sku_id=None, sku_code="")
    assert map_order(body, shop=SHOP, rates=RATES).lines[0].sku is None


@pytest.mark.parametrize(
    ("name", "status", "native"),
    [
        ("order_unpaid", OrderStatus.PENDING_PAYMENT, "10"),
        (PAID, OrderStatus.PAID, "20"),
        ("order_shipped", OrderStatus.SHIPPED, "30"),
        ("order_completed", OrderStatus.COMPLETED, "100"),
        ("order_cancelled", OrderStatus.CANCELLED, "250"),
    ],
)
def test_each_fixture_state_maps_to_its_canonical_status(
    name: str, status: OrderStatus, native: str
) -> None:
    order = mapped(name)
    assert (order.status, order.native_status) == (status, native)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (21, OrderStatus.SHIPPED),
        (190, OrderStatus.CANCELLED),
        (200, OrderStatus.REFUNDED),
        ("30", OrderStatus.SHIPPED),
    ],
)
def test_part_shipped_merchant_cancelled_and_after_sale_closed_codes(
    code: int | str, status: OrderStatus
) -> None:
    assert mapped(status=code).status == status


@pytest.mark.parametrize("code", [11, 0, -1, "shipped", True, 20.0])
def test_an_unknown_or_malformed_status_is_rejected_naming_it(code: Any) -> None:
    assert rejection(payload(status=code)).path == "status"


def test_only_paid_orders_have_a_paid_at() -> None:
    assert mapped("order_unpaid").paid_at is None
    assert mapped("order_cancelled").paid_at is None
    assert mapped("order_completed").paid_at == datetime(2026, 3, 2, 21, 48, 25, tzinfo=SHANGHAI)


def test_an_unpaid_status_has_no_paid_at_even_with_a_pay_time() -> None:
    assert mapped(status=10).paid_at is None


def test_a_zero_pay_time_means_not_paid() -> None:
    body = payload("order_cancelled")
    detail(body)["pay_info"]["pay_time"] = 0
    assert map_order(body, shop=SHOP, rates=RATES).paid_at is None


def test_a_paid_status_without_pay_info_counts_as_paid_when_created() -> None:
    body = payload()
    del detail(body)["pay_info"]
    order = map_order(body, shop=SHOP, rates=RATES)
    assert order.paid_at == order.created_at


def test_the_recipient_is_kept_masked_as_sent_with_full_region_names() -> None:
    recipient = mapped().recipient
    assert recipient is not None
    assert recipient.name == "陈**"
    assert recipient.phone == "138****5678"
    assert recipient.country == "CN"
    assert recipient.province == "广东省"
    assert recipient.city == "深圳市"
    assert recipient.district == "南山区"
    assert recipient.address == "粤海街道科技园********"
    assert recipient.postal_code == "518057"


@pytest.mark.parametrize(
    ("name", "province", "city"),
    [
        ("order_completed", "上海市", "上海市"),
        ("order_cancelled", "北京市", "北京市"),
        ("order_shipped", "四川省", "成都市"),
        ("order_unpaid", "浙江省", "杭州市"),
    ],
)
def test_short_and_full_region_names_both_end_up_full(name: str, province: str, city: str) -> None:
    recipient = mapped(name).recipient
    assert recipient is not None
    assert (recipient.province, recipient.city) == (province, city)


def test_an_order_without_an_address_has_no_recipient() -> None:
    body = payload()
    del detail(body)["delivery_info"]
    assert map_order(body, shop=SHOP, rates=RATES).recipient is None


def test_the_buyer_note_is_the_customer_notes_and_an_empty_one_is_none() -> None:
    assert mapped().buyer_note == "请用顺丰，谢谢"
    assert mapped("order_unpaid").buyer_note is None
    assert mapped().flags == ()


def test_goods_fall_back_to_line_prices_and_missing_freight_and_discount_are_zero() -> None:
    body = payload()
    price = detail(body)["price_info"]
    for key in ("product_price", "freight", "discounted_price"):
        del price[key]
    order = map_order(body, shop=SHOP, rates=RATES)
    assert order.goods_amount == Decimal("295.00")
    assert order.shipping_amount == order.discount_amount == 0


def test_a_null_freight_is_zero() -> None:
    body = payload()
    detail(body)["price_info"]["freight"] = None
    assert map_order(body, shop=SHOP, rates=RATES).shipping_amount == 0


def break_part(*keys: str | int, value: Any) -> dict[str, Any]:
    body = payload()
    target: Any = body
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (payload(order_id=None), "order_id"),
        (payload(order_id=3.7e18), "order_id"),
        (payload(order_id="WX-1"), "order_id"),
        (payload(create_time="2026-03-15 00:05:09"), "create_time"),
        (payload(create_time=0), "create_time"),
        (payload(update_time=1.7e9), "update_time"),
        (payload(order_detail=None), "order_detail"),
        (break_part("order_detail", "product_infos", value=[]), "order_detail.product_infos"),
        (break_part("order_detail", "product_infos", value={}), "order_detail.product_infos"),
        (
            break_part("order_detail", "price_info", "order_price", value=292.5),
            "order_detail.price_info.order_price",
        ),
        (
            break_part("order_detail", "price_info", "order_price", value="293.00"),
            "order_detail.price_info.order_price",
        ),
        (
            break_part("order_detail", "pay_info", "pay_time", value="yesterday"),
            "order_detail.pay_info.pay_time",
        ),
        (
            break_part("order_detail", "product_infos", 0, "sku_cnt", value=0),
            "order_detail.product_infos[0].sku_cnt",
        ),
        (
            break_part("order_detail", "product_infos", 0, "sku_cnt", value="2"),
            "order_detail.product_infos[0].sku_cnt",
        ),
        (
            break_part("order_detail", "product_infos", 1, "sale_price", value=39.0),
            "order_detail.product_infos[1].sale_price",
        ),
        (
            break_part("order_detail", "product_infos", 1, "real_price", value="free"),
            "order_detail.product_infos[1].real_price",
        ),
        (
            break_part("order_detail", "product_infos", 0, "sku_id", value="sku-1"),
            "order_detail.product_infos[0].sku_id",
        ),
        (
            break_part("order_detail", "delivery_info", "address_info", value="深圳"),
            "order_detail.delivery_info.address_info",
        ),
        (
            break_part(
                "order_detail", "delivery_info", "address_info", "tel_number", value=13800005678
            ),
            "order_detail.delivery_info.address_info.tel_number",
        ),
        (
            break_part("order_detail", "ext_info", "customer_notes", value=["快"]),
            "order_detail.ext_info.customer_notes",
        ),
    ],
)
def test_a_malformed_field_is_invalid_input_with_its_path(body: dict[str, Any], path: str) -> None:
    assert rejection(body).path == path


def test_a_payload_that_is_not_an_object_is_invalid_input() -> None:
    assert "expected an object" in str(rejection(["3705115058471208928"]))


def test_an_order_get_response_and_a_bare_order_unwrap_to_the_order() -> None:
    document = response()
    assert unwrap(document) == [document["order"]]
    assert unwrap(document["order"]) == [document["order"]]
    assert native_id(unwrap(document)[0]) == "3705115058471208928"


def test_a_saved_response_file_reads_unwraps_and_maps() -> None:
    documents = list(read(FIXTURES / "order_shipped.json"))
    assert len(documents) == 1
    (order,) = unwrap(documents[0].value)
    assert map_order(order, shop=SHOP, rates=RATES).id == "WX3705123390154271488"


def test_an_error_response_is_invalid_input_with_the_errcode_and_errmsg() -> None:
    document = {
        "errcode": 40001,
        "errmsg": "invalid credential, access_token is invalid or not "
        "latest, rid: 65f3a1b2-0c4d5e6f-1a2b3c4d",
    }
    with pytest.raises(InvalidInput) as caught:
        unwrap(document)
    assert caught.value.path == "errcode"
    assert "40001" in str(caught.value)
    assert "invalid credential" in str(caught.value)


def test_a_list_response_is_refused_saying_each_order_must_be_fetched() -> None:
    document = {
        "errcode": 0,
        "errmsg": "ok",
        "order_id_list": ["3705115058471208928"],
        "next_key": "THE_NEXT_KEY",
        "has_more": False,
    }
    with pytest.raises(InvalidInput, match="order/get") as caught:
        unwrap(document)
    assert caught.value.path == "order_id_list"


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ("order", None),
        ([response()], None),
        ({"errmsg": "ok"}, None),
        ({"errcode": 0, "order": None}, "order"),
        ({"errcode": 0, "order": {"status": 20}}, "order"),
        ({"errcode": "-1", "errmsg": "system error"}, "errcode"),
    ],
)
def test_anything_else_is_invalid_input_saying_what_was_expected(
    document: Any, path: str | None
) -> None:
    with pytest.raises(InvalidInput) as caught:
        unwrap(document)
    assert caught.value.path == path


@pytest.mark.parametrize("value", [None, 3.7e18, True, -5, 0, "", "37x", "３７"])
def test_a_missing_or_malformed_order_id_is_invalid_input(value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        native_id({"order_id": value})
    assert caught.value.path == "order_id"


PARTS: dict[str, tuple[str | int, ...]] = {
    "order": (),
    "detail": ("order_detail",),
    "line": ("order_detail", "product_infos", 0),
    "price": ("order_detail", "price_info"),
    "pay": ("order_detail", "pay_info"),
    "delivery": ("order_detail", "delivery_info"),
    "address": ("order_detail", "delivery_info", "address_info"),
    "ext": ("order_detail", "ext_info"),
}


def part(body: Any, keys: tuple[str | int, ...]) -> dict[str, Any]:
    for key in keys:
        body = body[key]
    target: dict[str, Any] = body
    return target


@settings(max_examples=300, deadline=None)
@given(where=st.sampled_from(sorted(PARTS)), index=st.integers(0, 100), value=json_values)
def test_any_value_in_any_field_either_maps_or_is_invalid_input(
    where: str, index: int, value: Any
) -> None:
    body = payload()
    target = part(body, PARTS[where])
    keys = sorted(target)
    target[keys[index % len(keys)]] = value
    try:
        order = map_order(body, shop=SHOP, rates=RATES)
    except InvalidInput as e:
        assert str(e)
    else:
        assert order.id.startswith("WX")
