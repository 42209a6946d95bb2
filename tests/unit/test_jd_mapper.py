from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jd import native_id, unwrap
from normalize.jd import map_order
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Order, OrderStatus
from tests.strategies import json_values

FIXTURES = Path(__file__).parents[1] / "fixtures" / "jd"
PAID = "order_get_paid.json"
SEARCH = "order_search.json"
COD = "order_cod_unpaid.json"
CANCELLED = "order_cancelled.json"
SHOP = "shanchuan.jd.com"
RATES = RateTable.from_mapping({})
S = OrderStatus


def document(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def payload(name: str = PAID, index: int = 0, **changes: Any) -> dict[str, Any]:
    body = dict(unwrap(document(name))[index])
    body.update(changes)
    return body


def mapped(name: str = PAID, index: int = 0, **changes: Any) -> Order:
    return map_order(payload(name, index, **changes), shop=SHOP, rates=RATES)


def rejection(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        map_order(body, shop=SHOP, rates=RATES)
    return caught.value


def with_item(index: int = 0, **changes: Any) -> dict[str, Any]:
    body = payload()
    body["itemInfoList"][index].update(changes)
    return body


def with_consignee(**changes: Any) -> dict[str, Any]:
    body = payload()
    body["consigneeInfo"].update(changes)
    return body


def test_the_order_id_string_is_kept_as_sent() -> None:
    order = mapped()
    assert order.native_id == "312657084219"
    assert order.id == "JD312657084219"
    assert mapped(orderId=312657084219).native_id == "312657084219"


def test_naive_beijing_times_are_read_as_plus_eight() -> None:
    order = mapped()
    assert order.created_at == datetime(2026, 3, 8, 20, 41, 9, tzinfo=SHANGHAI)
    assert order.created_at.utcoffset() == timedelta(hours=8)
    assert order.paid_at == datetime(2026, 3, 8, 20, 41, 35, tzinfo=SHANGHAI)
    assert order.updated_at == datetime(2026, 3, 8, 20, 41, 36, tzinfo=SHANGHAI)
    assert order.model_dump(mode="json")["created_at"] == "2026-03-08T20:41:09+08:00"


@pytest.mark.parametrize("not_yet", ["0001-01-01 00:00:00", "1970-01-01 08:00:00", "", None])
def test_jd_placeholder_payment_times_mean_not_paid(not_yet: str | None) -> None:
    assert mapped(paymentConfirmTime=not_yet).paid_at is None


def test_without_modified_the_payment_time_is_the_update_time() -> None:
    assert mapped(modified=None).updated_at == mapped().paid_at
    assert mapped(COD, modified=None).updated_at == mapped(COD).created_at


def test_money_is_exact_yuan_from_decimal_strings() -> None:
    order = mapped()
    assert order.currency == "CNY"
    assert order.goods_amount == Decimal("307.90")
    assert order.discount_amount == Decimal("20.00")
    assert order.shipping_amount == Decimal("0.00")
    assert order.paid_amount == Decimal("287.90")
    assert order.paid_cny == Decimal("287.90")
    assert order.model_dump(mode="json")["paid_amount"] == "287.90"
    finished = mapped(SEARCH, 1)
    assert (finished.shipping_amount, finished.paid_amount) == (Decimal("6.00"), Decimal("105.80"))


def test_the_discount_falls_back_to_total_minus_seller_price_then_zero() -> None:
    assert mapped(sellerDiscount=None).discount_amount == Decimal("20.00")
    assert mapped(sellerDiscount=None, orderSellerPrice=None).discount_amount == 0
    assert mapped(orderTotalPrice=None).goods_amount == Decimal("307.90")


def test_lines_read_item_total_strings_as_quantities() -> None:
    raw_item = payload()["itemInfoList"][0]
    assert raw_item["itemTotal"] == "2"
    lines = mapped().lines
    assert [line.sku for line in lines] == ["SC-TREK-BLK-42", "SC-SOCK-3P"]
    assert [line.channel_sku_id for line in lines] == ["10054887745652", "10054887745690"]
    assert [line.quantity for line in lines] == [2, 1]
    assert [line.unit_price for line in lines] == [Decimal("129.00"), Decimal("49.90")]
    assert [line.line_total for line in lines] == [Decimal("258.00"), Decimal("49.90")]
    assert lines[1].title == "山川 速干徒步袜 三双装"
    assert map_order(with_item(itemTotal=3), shop=SHOP, rates=RATES).lines[0].quantity == 3


@pytest.mark.parametrize(
    ("name", "index", "expected"),
    [
        (PAID, 0, S.PAID),
        (COD, 0, S.PAID),
        (SEARCH, 0, S.SHIPPED),
        (SEARCH, 1, S.COMPLETED),
        (SEARCH, 2, S.REVIEW_HOLD),
        (CANCELLED, 0, S.CANCELLED),
    ],
)
def test_each_fixture_state_maps_to_its_canonical_status(
    name: str, index: int, expected: OrderStatus
) -> None:
    order = mapped(name, index)
    assert order.status == expected
    assert order.native_status == payload(name, index)["orderState"]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("WAIT_SELLER_STOCK_OUT", S.PAID),
        ("WAIT_SELLER_DELIVERY", S.PAID),
        ("WAIT_SEND_CODE", S.PAID),
        ("WAIT_GOODS_RECEIVE_CONFIRM", S.SHIPPED),
        ("FINISHED_L", S.COMPLETED),
        ("TRADE_CANCELED", S.CANCELLED),
        ("LOCKED", S.REVIEW_HOLD),
        ("PAUSE", S.REVIEW_HOLD),
        ("POP_ORDER_PAUSE", S.REVIEW_HOLD),
    ],
)
def test_every_jd_order_state_has_a_canonical_status(state: str, expected: OrderStatus) -> None:
    assert mapped(orderState=state).status == expected


def test_locked_and_paused_orders_are_held_with_a_flag_saying_why() -> None:
    assert mapped(SEARCH, 2).flags == ("locked",)
    assert mapped(orderState="POP_ORDER_PAUSE").flags == ("paused",)
    assert mapped().flags == ()


def test_a_cash_on_delivery_order_is_shippable_unpaid_and_flagged() -> None:
    order = mapped(COD)
    assert payload(COD)["paymentConfirmTime"] == "0001-01-01 00:00:00"
    assert (order.status, order.paid_at, order.flags) == (S.PAID, None, ("cod",))


def test_a_cancelled_paid_order_keeps_its_payment_time() -> None:
    order = mapped(CANCELLED)
    assert order.status == S.CANCELLED
    assert order.paid_at == datetime(2026, 3, 7, 19, 44, 30, tzinfo=SHANGHAI)


def test_an_unknown_order_state_is_rejected_naming_the_field() -> None:
    assert rejection(payload(orderState="TELEPORTED")).path == "orderState"


def test_short_province_and_city_names_become_full_standard_names() -> None:
    raw = payload()["consigneeInfo"]
    assert (raw["province"], raw["city"]) == ("广东", "深圳")
    recipient = mapped().recipient
    assert recipient is not None
    assert recipient.province == "广东省"
    assert (recipient.city, recipient.district) == ("深圳市", "南山区")
    far_west = mapped(SEARCH, 1).recipient
    assert far_west is not None
    assert (far_west.province, far_west.city) == ("新疆维吾尔自治区", "乌鲁木齐市")
    shanghai = mapped(SEARCH, 0).recipient
    assert shanghai is not None and (shanghai.province, shanghai.city) == ("上海市", "上海市")


def test_ciphertext_and_masked_phone_are_kept_exactly_as_sent() -> None:
    raw = payload()["consigneeInfo"]
    recipient = mapped().recipient
    assert recipient is not None
    assert recipient.name == raw["fullname"]
    assert recipient.address == raw["fullAddress"]
    assert recipient.phone == "138*******2"
    assert recipient.country == "CN"
    assert recipient.postal_code is None


def test_the_telephone_stands_in_for_a_missing_mobile() -> None:
    recipient = map_order(with_consignee(mobile=""), shop=SHOP, rates=RATES).recipient
    assert recipient is not None and recipient.phone == "138*******2"


def test_an_order_without_consignee_has_no_recipient() -> None:
    assert mapped(consigneeInfo=None).recipient is None


def test_the_order_remark_is_the_buyer_note() -> None:
    assert mapped().buyer_note == "周末送货"
    assert mapped(orderRemark="").buyer_note is None


def test_both_jos_wrappers_and_a_bare_order_unwrap_to_their_orders() -> None:
    assert [o["orderId"] for o in unwrap(document(SEARCH))] == [
        "312590338147",
        "311877219054",
        "312660471385",
    ]
    order = unwrap(document(PAID))[0]
    assert unwrap(order) == [order]
    empty = {"jingdong_pop_order_search_responce": {"searchorderinfo_result": {"orderTotal": 0}}}
    assert unwrap(empty) == []
    spelled_right = {"jingdong_pop_order_get_response": {"orderDetailInfo": {"orderInfo": order}}}
    assert unwrap(spelled_right) == [order]


def test_the_adapter_reads_the_order_id() -> None:
    assert native_id(payload()) == "312657084219"
    with pytest.raises(InvalidInput) as caught:
        native_id({"orderId": "JD312657084219"})
    assert caught.value.path == "orderId"


def test_a_jos_error_response_is_invalid_input_carrying_its_code_and_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        unwrap(document("error_response.json"))
    assert caught.value.path == "error_response"
    assert "JOS error 19" in str(caught.value)
    assert "Invalid access_token" in str(caught.value)


def test_a_failed_api_result_is_invalid_input_carrying_its_code() -> None:
    failed = {
        "jingdong_pop_order_search_responce": {
            "searchorderinfo_result": {
                "orderTotal": 0,
                "apiResult": {
                    "success": False,
                    "numberCode": 10100001,
                    "englishErrCode": "param error",
                    "chineseErrCode": "参数错误",
                },
            }
        }
    }
    with pytest.raises(InvalidInput) as caught:
        unwrap(failed)
    result = "jingdong_pop_order_search_responce.searchorderinfo_result"
    assert caught.value.path == f"{result}.apiResult"
    assert "10100001" in str(caught.value) and "参数错误" in str(caught.value)


@pytest.mark.parametrize(
    "document",
    [
        [1],
        "order",
        {"order": {}},
        {"jingdong_pop_order_get_responce": []},
        {
            "jingdong_pop_order_get_responce": {
                "orderDetailInfo": {"orderInfo": {"orderState": "x"}}
            }
        },
        {"jingdong_pop_order_search_responce": {"searchorderinfo_result": {"orderInfoList": {}}}},
    ],
)
def test_anything_else_is_invalid_input(document: Any) -> None:
    with pytest.raises(InvalidInput):
        unwrap(document)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (payload(orderId=None), "orderId"),
        (payload(orderId=3.1265708421e11), "orderId"),
        (payload(orderState=None), "orderState"),
        (payload(orderStartTime="0001-01-01 00:00:00"), "orderStartTime"),
        (payload(orderStartTime="2026-03-08"), "orderStartTime"),
        (payload(paymentConfirmTime="soon"), "paymentConfirmTime"),
        (payload(orderPayment=None), "orderPayment"),
        (payload(orderPayment=287.9), "orderPayment"),
        (payload(freightPrice="free"), "freightPrice"),
        (payload(itemInfoList=[]), "itemInfoList"),
        (payload(itemInfoList={"sku": 1}), "itemInfoList"),
        (payload(consigneeInfo="广东深圳"), "consigneeInfo"),
        (with_consignee(province=19), "consigneeInfo.province"),
        (with_item(itemTotal="two"), "itemInfoList[0].itemTotal"),
        (with_item(itemTotal="0"), "itemInfoList[0].itemTotal"),
        (with_item(itemTotal=1.0), "itemInfoList[0].itemTotal"),
        (with_item(itemTotal="9" * 5000), "itemInfoList[0].itemTotal"),
        (with_item(itemTotal=None), "itemInfoList[0].itemTotal"),
        (with_item(itemTotal="2000000"), "itemInfoList[0].quantity"),
        (with_item(jdPrice=None), "itemInfoList[0].jdPrice"),
        (with_item(skuId="sku-x"), "itemInfoList[0].skuId"),
        (with_item(outerSkuId=42), "itemInfoList[0].outerSkuId"),
    ],
)
def test_a_malformed_field_is_invalid_input_with_its_path(body: dict[str, Any], path: str) -> None:
    assert rejection(body).path == path


ORDER_KEYS = sorted(payload())
ITEM_KEYS = sorted(payload()["itemInfoList"][0])
CONSIGNEE_KEYS = sorted(payload()["consigneeInfo"])


@settings(max_examples=300, deadline=None)
@given(
    where=st.sampled_from(["order", "item", "consignee"]),
    index=st.integers(0, 200),
    value=json_values,
)
def test_any_value_in_any_field_either_maps_or_is_invalid_input(
    where: str, index: int, value: Any
) -> None:
    body = payload()
    target, keys = {
        "order": (body, ORDER_KEYS),
        "item": (body["itemInfoList"][0], ITEM_KEYS),
        "consignee": (body["consigneeInfo"], CONSIGNEE_KEYS),
    }[where]
    target[keys[index % len(keys)]] = value
    try:
        order = map_order(body, shop=SHOP, rates=RATES)
    except InvalidInput as e:
        assert str(e)
    else:
        assert order.id.startswith("JD")
