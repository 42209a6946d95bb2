from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.pdd import native_id, unwrap
from normalize.pdd import map_order
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Order, OrderStatus
from tests.strategies import json_values

FIXTURES = Path(__file__).parents[1] / "fixtures" / "pdd"
SHOP = "pdd-mall-889123"
RATES = RateTable.from_mapping({})
EIGHT_HOURS = timedelta(hours=8)


def document(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def payload(name: str = "order_info_awaiting_shipment.json", **changes: Any) -> dict[str, Any]:
    body = dict(unwrap(document(name))[0])
    body.update(changes)
    return body


def mapped(name: str = "order_info_awaiting_shipment.json", **changes: Any) -> Order:
    return map_order(payload(name, **changes), shop=SHOP, rates=RATES)


def rejection(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        map_order(body, shop=SHOP, rates=RATES)
    return caught.value


def test_the_order_sn_is_kept_as_the_string_sent_behind_the_pdd_prefix() -> None:
    order = mapped()
    assert order.native_id == "251215-481803633911509"
    assert order.id == "PDD251215-481803633911509"
    assert order.channel == "pdd"
    assert order.shop == SHOP


@pytest.mark.parametrize("sn", [251215481803633911509, "251215481803633911509", "２５１２１５-48"])
def test_an_order_sn_that_is_not_a_dated_string_is_rejected(sn: Any) -> None:
    assert rejection(payload(order_sn=sn)).path == "order_sn"


def test_naive_beijing_times_are_made_aware_at_plus_eight() -> None:
    order = mapped()
    assert order.created_at == datetime(2025, 12, 15, 2, 21, 7, tzinfo=UTC)
    assert order.created_at.utcoffset() == EIGHT_HOURS
    assert order.paid_at == datetime(2025, 12, 15, 10, 21, 8, tzinfo=SHANGHAI)
    assert order.updated_at == datetime(2025, 12, 15, 10, 51, 9, tzinfo=SHANGHAI)
    dumped = order.model_dump(mode="json")
    assert dumped["created_at"] == "2025-12-15T10:21:07+08:00"
    assert dumped["paid_at"] == "2025-12-15T10:21:08+08:00"


def test_an_empty_pay_time_falls_back_to_the_confirm_time() -> None:
    assert mapped(pay_time="").paid_at == datetime(2025, 12, 15, 10, 21, 9, tzinfo=SHANGHAI)


def test_a_missing_updated_at_falls_back_to_the_creation_time() -> None:
    order = mapped(updated_at=None)
    assert order.updated_at == order.created_at


@pytest.mark.parametrize("created", ["2025-12-15T10:21:07+08:00", 1765765267, "2025/12/15 10:21"])
def test_a_created_time_not_in_the_pdd_format_is_rejected(created: Any) -> None:
    assert rejection(payload(created_time=created)).path == "created_time"


def test_yuan_sent_as_json_numbers_become_the_exact_decimals_written() -> None:
    order = mapped()
    assert order.currency == "CNY"
    assert order.paid_amount == Decimal("59.9")
    # Not Decimal(59.9) == 59.89999999999999857891452847979962825775146484375.
    assert str(order.paid_amount) == "59.9"
    assert order.goods_amount == Decimal("69.9")
    assert order.discount_amount == Decimal("15.0")
    assert order.shipping_amount == Decimal("5.0")
    assert order.model_dump(mode="json")["paid_amount"] == "59.9"


def test_the_amounts_add_up_and_cny_needs_no_rate() -> None:
    order = mapped()
    assert order.goods_amount - order.discount_amount + order.shipping_amount == order.paid_amount
    assert order.paid_cny == Decimal("59.90")


@pytest.mark.parametrize("amount", ["59.9", 59, 59.9])
def test_an_amount_may_also_arrive_as_a_string_or_an_integer(amount: Any) -> None:
    assert mapped(pay_amount=amount).paid_amount == Decimal(str(amount))


def test_goods_fall_back_to_the_sum_of_lines_and_missing_postage_is_zero() -> None:
    order = mapped(goods_amount=None, postage=None, discount_amount=None)
    assert order.goods_amount == Decimal("69.9")
    assert order.shipping_amount == 0
    assert order.discount_amount == 0


def test_lines_carry_the_merchant_sku_the_pdd_sku_id_and_exact_prices() -> None:
    lines = mapped().lines
    assert [line.sku for line in lines] == ["TS-2025-WHT-M", "SOCK-3P"]
    assert [line.channel_sku_id for line in lines] == ["1288437716253", "1288437716901"]
    assert [line.quantity for line in lines] == [2, 1]
    assert [line.unit_price for line in lines] == [Decimal("29.9"), Decimal("10.1")]
    assert [line.line_total for line in lines] == [Decimal("59.8"), Decimal("10.1")]
    assert lines[0].title == "纯棉短袖T恤男夏季宽松圆领打底衫"


def test_a_line_without_any_outer_code_has_no_sku() -> None:
    body = payload()
    body["item_list"][1].update(outer_id="", outer_goods_id="")
    assert map_order(body, shop=SHOP, rates=RATES).lines[1].sku is None


def test_a_numeric_sku_id_is_kept_as_a_string() -> None:
    body = payload()
    body["item_list"][0]["sku_id"] = 1288437716253
    assert map_order(body, shop=SHOP, rates=RATES).lines[0].channel_sku_id == "1288437716253"


@pytest.mark.parametrize(
    ("name", "status", "paid"),
    [
        ("order_info_awaiting_shipment.json", OrderStatus.PAID, True),
        ("order_info_shipped.json", OrderStatus.SHIPPED, True),
        ("order_info_received.json", OrderStatus.DELIVERED, True),
        ("order_info_refunded.json", OrderStatus.REFUNDED, True),
        ("order_info_group_failed.json", OrderStatus.CANCELLED, True),
        ("order_info_group_forming.json", OrderStatus.PENDING_PAYMENT, True),
    ],
)
def test_each_fixture_state_maps_to_its_canonical_status(
    name: str, status: OrderStatus, paid: bool
) -> None:
    order = mapped(name)
    assert order.status == status
    assert (order.paid_at is not None) == paid


@pytest.mark.parametrize(
    ("order_status", "refund_status", "confirm_status", "expected"),
    [
        (1, 1, 1, OrderStatus.PAID),
        (2, 1, 1, OrderStatus.SHIPPED),
        (3, 1, 1, OrderStatus.DELIVERED),
        (2, 2, 1, OrderStatus.SHIPPED),
        (1, 3, 1, OrderStatus.PAID),
        (1, 4, 1, OrderStatus.REFUNDED),
        (3, 4, 1, OrderStatus.REFUNDED),
        (1, 1, 0, OrderStatus.PENDING_PAYMENT),
        (1, 1, 2, OrderStatus.CANCELLED),
        (1, 4, 2, OrderStatus.CANCELLED),
        (1, None, None, OrderStatus.PAID),
    ],
)
def test_status_follows_cancellation_then_refund_then_deal_then_shipping(
    order_status: int,
    refund_status: int | None,
    confirm_status: int | None,
    expected: OrderStatus,
) -> None:
    order = mapped(
        order_status=order_status, refund_status=refund_status, confirm_status=confirm_status
    )
    assert order.status == expected


@pytest.mark.parametrize(("refund_status", "flag"), [(2, "after_sale"), (3, "refunding")])
def test_an_after_sale_in_progress_keeps_the_status_and_adds_a_flag(
    refund_status: int, flag: str
) -> None:
    order = mapped("order_info_shipped.json", refund_status=refund_status)
    assert order.status == OrderStatus.SHIPPED
    assert order.flags == (flag,)


def test_native_status_records_all_three_pdd_codes() -> None:
    native = mapped(refund_status=2).native_status
    assert native == "order_status=1/refund_status=2/confirm_status=1"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("order_status", 4),
        ("order_status", "1"),
        ("order_status", None),
        ("refund_status", 5),
        ("confirm_status", 3),
        ("confirm_status", True),
    ],
)
def test_an_unknown_or_malformed_status_code_is_rejected(key: str, value: Any) -> None:
    assert rejection(payload(**{key: value})).path == key


def test_ciphertext_is_kept_verbatim_while_the_order_awaits_shipment() -> None:
    recipient = mapped().recipient
    assert recipient is not None
    assert recipient.name == "~AgAAAAOq7fYCBVp0mwCXb2Fw9QkLm4n1TzRyE0dVuH8=~Rf6mT2pa~0~~"
    assert recipient.phone == "$Qm9hZ2Jp3wTn$AgAAAAOq7fYCBlp0mwD7kP2xVqL0cN8sYt4RuJm6hE1=$0$$"
    assert recipient.address is not None and recipient.address.startswith("~AgAAAAOq7fYCCFp0")
    assert recipient.address == payload()["receiver_address"]


def test_the_masked_values_are_used_once_pdd_empties_the_ciphertext() -> None:
    recipient = mapped("order_info_shipped.json").recipient
    assert recipient is not None
    assert recipient.name == "李**"
    assert recipient.phone == "1*********7"
    assert recipient.address == "文三路***号**幢"


def test_the_full_address_is_the_fallback_when_the_street_part_is_missing() -> None:
    order = mapped(receiver_address=None, receiver_address_mask=None)
    assert order.recipient is not None
    assert order.recipient.address == payload()["address"]


def test_regions_are_full_standard_names_and_town_is_the_district() -> None:
    recipient = mapped(province="广东", city="深圳", town="南山区").recipient
    assert recipient is not None
    assert (recipient.country, recipient.province, recipient.city, recipient.district) == (
        "CN",
        "广东省",
        "深圳市",
        "南山区",
    )
    beijing = mapped("order_info_received.json").recipient
    assert beijing is not None and (beijing.province, beijing.city) == ("北京市", "北京市")


def test_presale_orders_are_flagged_and_the_buyer_memo_is_kept() -> None:
    presale = map_order(unwrap(document("order_list.json"))[1], shop=SHOP, rates=RATES)
    assert presale.flags == ("presale",)
    assert mapped(trade_type=1).flags == ("presale",)
    assert mapped().buyer_note == "请发顺丰，谢谢"
    assert mapped(buyer_memo="").buyer_note is None


def break_line(key: str, value: Any) -> dict[str, Any]:
    body = payload()
    body["item_list"][0][key] = value
    return body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({k: v for k, v in payload().items() if k != "order_sn"}, "order_sn"),
        (payload(created_time=None), "created_time"),
        (payload(pay_amount=None), "pay_amount"),
        (payload(pay_amount="lots"), "pay_amount"),
        (payload(pay_amount=float("nan")), "pay_amount"),
        (payload(pay_amount=1e300), "pay_amount"),
        (payload(pay_amount=True), "pay_amount"),
        (payload(postage=[5]), "postage"),
        (payload(pay_time="yesterday"), "pay_time"),
        (payload(item_list=None), "item_list"),
        (payload(item_list=[]), "item_list"),
        (payload(item_list=["x"]), "item_list[0]"),
        (payload(receiver_name=5), "receiver_name"),
        (break_line("goods_count", None), "item_list[0].goods_count"),
        (break_line("goods_count", 0), "item_list[0].goods_count"),
        (break_line("goods_count", 2.0), "item_list[0].goods_count"),
        (break_line("goods_price", None), "item_list[0].goods_price"),
        (break_line("sku_id", "sku-1"), "item_list[0].sku_id"),
        (break_line("outer_id", 42), "item_list[0].outer_id"),
    ],
)
def test_a_missing_or_malformed_field_is_invalid_input_with_its_path(
    body: dict[str, Any], path: str
) -> None:
    assert rejection(body).path == path


def test_a_payload_that_is_not_an_object_is_invalid_input() -> None:
    assert "expected an object" in str(rejection(["251215-481803633911509"]))


def test_the_detail_and_list_responses_unwrap_to_their_orders() -> None:
    [detail] = unwrap(document("order_info_awaiting_shipment.json"))
    assert detail["order_sn"] == "251215-481803633911509"
    orders = unwrap(document("order_list.json"))
    assert [o["order_sn"] for o in orders] == ["251211-302287514460193", "251215-771902466318054"]
    assert unwrap(detail) == [detail]
    increment = {"order_sn_increment_get_response": {"has_next": False, "order_sn_list": [detail]}}
    assert unwrap(increment) == [detail]


def test_an_error_response_is_invalid_input_carrying_code_and_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        unwrap(document("error_token_expired.json"))
    assert caught.value.path == "error_response"
    assert "10019" in str(caught.value)
    assert "access_token已过期" in str(caught.value)


def test_an_error_nested_in_a_named_response_is_invalid_input_too() -> None:
    nested = {
        "order_info_get_response": {
            "error_response": {"error_code": 50001, "error_msg": "业务服务错误"}
        }
    }
    with pytest.raises(InvalidInput) as caught:
        unwrap(nested)
    assert caught.value.path == "order_info_get_response.error_response"
    assert "50001" in str(caught.value)


@pytest.mark.parametrize(
    ("document_", "path"),
    [
        ([{"order_sn": "251215-481803633911509"}], None),
        ({"goods_list": []}, None),
        ({"order_info_get_response": []}, "order_info_get_response"),
        ({"order_info_get_response": {"order_info": None}}, "order_info_get_response.order_info"),
        ({"order_list_get_response": {"order_list": {}}}, "order_list_get_response.order_list"),
        ({"order_list_get_response": {"order_list": [5]}}, "order_list_get_response.order_list[0]"),
    ],
)
def test_any_other_document_is_invalid_input(document_: Any, path: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        unwrap(document_)
    assert caught.value.path == path


def test_the_native_id_is_the_order_sn_string() -> None:
    assert native_id(payload()) == "251215-481803633911509"
    for bad in (None, 251215481803633911509, "251215", "251215-48x"):
        with pytest.raises(InvalidInput):
            native_id({"order_sn": bad})


ORDER_KEYS = sorted(payload())
LINE_KEYS = sorted(payload()["item_list"][0])


@settings(max_examples=300, deadline=None)
@given(where=st.sampled_from(["order", "line"]), index=st.integers(0, 200), value=json_values)
def test_any_value_in_any_field_either_maps_or_is_invalid_input(
    where: str, index: int, value: Any
) -> None:
    body = payload()
    target, keys = (body, ORDER_KEYS) if where == "order" else (body["item_list"][0], LINE_KEYS)
    target[keys[index % len(keys)]] = value
    try:
        order = map_order(body, shop=SHOP, rates=RATES)
    except InvalidInput as e:
        assert str(e)
    else:
        assert order.id.startswith("PDD")
