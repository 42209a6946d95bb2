from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.taobao import native_id, unwrap
from normalize.rates import RateTable
from normalize.taobao import map_order
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Order, OrderStatus
from tests.strategies import json_values

FIXTURES = Path(__file__).parents[1] / "fixtures" / "taobao"
PAID = "trade_fullinfo_paid.json"
UNPAID = "trade_fullinfo_unpaid.json"
SOLD = "trades_sold_get.json"
SHOP = "shanchuan.tmall.com"
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


def with_line(name: str = PAID, index: int = 0, **changes: Any) -> dict[str, Any]:
    body = payload(name)
    body["orders"]["order"][index].update(changes)
    return body


def test_a_nineteen_digit_tid_beyond_float_precision_is_kept_exactly() -> None:
    raw = payload()
    assert isinstance(raw["tid"], int) and raw["tid"] > 2**53
    assert int(float(raw["tid"])) != raw["tid"]
    order = mapped()
    assert order.native_id == "4087312065519582261"
    assert order.id == "TB4087312065519582261"


def test_the_tid_number_is_used_when_tid_str_is_missing() -> None:
    body = payload()
    del body["tid_str"]
    assert map_order(body, shop=SHOP, rates=RATES).native_id == "4087312065519582261"


def test_a_tid_mangled_by_a_float_parser_is_never_used() -> None:
    mangled = float(4087312065519582261)
    assert mapped(tid=mangled).native_id == "4087312065519582261"
    body = payload(tid=mangled)
    del body["tid_str"]
    assert rejection(body).path == "tid"


def test_naive_beijing_times_are_read_as_plus_eight() -> None:
    order = mapped()
    assert order.created_at == datetime(2026, 3, 8, 21, 14, 5, tzinfo=SHANGHAI)
    assert order.created_at.utcoffset() == timedelta(hours=8)
    assert order.paid_at == datetime(2026, 3, 8, 21, 14, 37, tzinfo=SHANGHAI)
    assert order.updated_at == datetime(2026, 3, 8, 21, 15, 2, tzinfo=SHANGHAI)
    dumped = order.model_dump(mode="json")
    assert dumped["created_at"] == "2026-03-08T21:14:05+08:00"
    assert dumped["paid_at"] == "2026-03-08T21:14:37+08:00"


def test_without_modified_the_latest_known_time_is_the_update_time() -> None:
    assert mapped(SOLD, modified=None).updated_at == datetime(
        2026, 3, 6, 16, 40, 12, tzinfo=SHANGHAI
    )
    assert mapped(UNPAID, modified="").updated_at == mapped(UNPAID).created_at


def test_money_is_exact_yuan_from_decimal_strings() -> None:
    order = mapped()
    assert order.currency == "CNY"
    assert order.goods_amount == Decimal("217.90")
    assert order.discount_amount == Decimal("11.90")
    assert order.shipping_amount == Decimal("8.00")
    assert order.paid_amount == Decimal("214.00")
    assert order.paid_cny == Decimal("214.00")
    assert order.model_dump(mode="json")["paid_amount"] == "214.00"
    assert order.goods_amount - order.discount_amount + order.shipping_amount == order.paid_amount


def test_lines_carry_merchant_skus_quantities_and_their_share_of_the_payment() -> None:
    order = mapped()
    assert [line.sku for line in order.lines] == ["SC-TREK-BLK-42", "SC-SOCK-3P"]
    assert [line.channel_sku_id for line in order.lines] == ["4987231005162", None]
    assert [line.quantity for line in order.lines] == [2, 1]
    assert [line.unit_price for line in order.lines] == [Decimal("89.00"), Decimal("39.90")]
    assert [line.line_total for line in order.lines] == [Decimal("168.90"), Decimal("37.10")]
    assert order.lines[0].title == "山川 轻量徒步鞋 男款防滑透气登山鞋"
    net = sum(line.line_total for line in order.lines)
    assert net + order.shipping_amount == order.paid_amount


def test_a_lone_sub_order_payment_includes_postage_which_is_left_out_of_its_total() -> None:
    line = mapped(UNPAID).lines[0]
    assert line.line_total == Decimal("59.00")
    body = with_line(UNPAID, divide_order_fee="58.50")
    assert map_order(body, shop=SHOP, rates=RATES).lines[0].line_total == Decimal("58.50")


def test_orders_sent_as_a_plain_array_are_read_too() -> None:
    lines = mapped(orders=payload()["orders"]["order"]).lines
    assert [line.sku for line in lines] == ["SC-TREK-BLK-42", "SC-SOCK-3P"]


def test_missing_goods_shipping_and_discount_fall_back_to_lines_and_zero() -> None:
    order = mapped(total_fee=None, post_fee=None, discount_fee=None)
    assert order.goods_amount == Decimal("217.90")
    assert order.shipping_amount == 0
    assert order.discount_amount == 0


@pytest.mark.parametrize(
    ("name", "index", "expected"),
    [
        (UNPAID, 0, S.PENDING_PAYMENT),
        (PAID, 0, S.PAID),
        (SOLD, 0, S.SHIPPED),
        (SOLD, 1, S.PENDING_PAYMENT),
        ("trade_closed_refunded.json", 0, S.REFUNDED),
        ("trade_closed_by_taobao.json", 0, S.CANCELLED),
    ],
)
def test_each_fixture_state_maps_to_its_canonical_status(
    name: str, index: int, expected: OrderStatus
) -> None:
    order = mapped(name, index)
    assert order.status == expected
    assert order.native_status == payload(name, index)["status"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("TRADE_NO_CREATE_PAY", S.PENDING_PAYMENT),
        ("WAIT_BUYER_PAY", S.PENDING_PAYMENT),
        ("PAY_PENDING", S.PENDING_PAYMENT),
        ("WAIT_SELLER_SEND_GOODS", S.PAID),
        ("PAID_FORBID_CONSIGN", S.REVIEW_HOLD),
        ("SELLER_CONSIGNED_PART", S.SHIPPED),
        ("WAIT_BUYER_CONFIRM_GOODS", S.SHIPPED),
        ("TRADE_BUYER_SIGNED", S.DELIVERED),
        ("TRADE_FINISHED", S.COMPLETED),
        ("TRADE_CLOSED", S.REFUNDED),
        ("TRADE_CLOSED_BY_TAOBAO", S.CANCELLED),
    ],
)
def test_every_taobao_trade_status_has_a_canonical_status(
    status: str, expected: OrderStatus
) -> None:
    assert mapped(status=status).status == expected


def test_a_closed_trade_that_was_never_paid_is_cancelled_not_refunded() -> None:
    order = mapped(status="TRADE_CLOSED", pay_time=None)
    assert order.status == S.CANCELLED
    assert order.paid_at is None


def test_unpaid_and_cancelled_trades_have_no_paid_at_even_with_a_deposit_time() -> None:
    assert mapped(UNPAID).paid_at is None
    assert mapped(SOLD, 1, pay_time="2026-03-10 20:00:40").paid_at is None
    assert mapped("trade_closed_by_taobao.json").paid_at is None
    assert mapped("trade_closed_refunded.json").paid_at == datetime(
        2026, 3, 1, 9, 13, 2, tzinfo=SHANGHAI
    )


def test_an_unknown_status_is_rejected_naming_the_field() -> None:
    assert rejection(payload(status="TRADE_TELEPORTED")).path == "status"


def test_a_trade_taobao_forbids_shipping_is_held_and_flagged() -> None:
    order = mapped(status="PAID_FORBID_CONSIGN")
    assert order.status == S.REVIEW_HOLD
    assert "consign_forbidden" in order.flags


def test_short_province_and_city_names_become_full_standard_names() -> None:
    recipient = mapped(UNPAID).recipient
    assert recipient is not None
    assert recipient.province == "广东省"
    assert (recipient.city, recipient.district) == ("深圳市", "南山区")
    shipped = mapped(SOLD, 0).recipient
    assert shipped is not None and (shipped.province, shipped.city) == ("上海市", "上海市")
    presale = mapped(SOLD, 1).recipient
    assert presale is not None
    assert (presale.province, presale.city) == ("内蒙古自治区", "呼和浩特市")


def test_a_city_sent_only_as_a_district_is_used_as_the_city() -> None:
    order = mapped(receiver_state="河南省", receiver_city="", receiver_district="济源市")
    recipient = order.recipient
    assert recipient is not None and recipient.city == "济源市"


def test_encrypted_receiver_fields_are_kept_exactly_as_sent() -> None:
    raw = payload()
    recipient = mapped().recipient
    assert recipient is not None
    assert recipient.name == raw["receiver_name"] == "~h7Wt2bQ9kYx1mV3eR8pLzA==~Qm4xT0aB~1~~"
    assert recipient.phone == raw["receiver_mobile"]
    assert recipient.address == raw["receiver_address"]
    assert recipient.country == "CN"
    assert recipient.postal_code == "310012"


def test_a_trade_without_receiver_fields_has_no_recipient() -> None:
    body = {k: v for k, v in payload().items() if not k.startswith("receiver_")}
    assert map_order(body, shop=SHOP, rates=RATES).recipient is None


def test_the_buyer_message_is_the_buyer_note() -> None:
    assert mapped().buyer_note == "请用顺丰，谢谢"
    assert mapped(buyer_message="").buyer_note is None


def test_presale_cash_on_delivery_and_cross_border_trades_are_flagged() -> None:
    assert mapped(SOLD, 1).flags == ("presale",)
    cod = mapped(type="cod", pay_time=None)
    assert (cod.flags, cod.status, cod.paid_at) == (("cod",), S.PAID, None)
    assert mapped(cross_bonded_declare=True).flags == ("cross_border",)
    assert mapped().flags == ()


def test_a_sub_order_refunded_before_shipping_is_not_a_line_to_fulfil() -> None:
    order = map_order(
        with_line(index=1, status="TRADE_CLOSED", refund_status="SUCCESS"), shop=SHOP, rates=RATES
    )
    assert [line.sku for line in order.lines] == ["SC-TREK-BLK-42"]
    assert order.flags == ("partly_refunded",)
    assert len(mapped("trade_closed_refunded.json").lines) == 1


def test_the_api_wrappers_and_a_bare_trade_unwrap_to_their_trades() -> None:
    assert [t["tid_str"] for t in unwrap(document(SOLD))] == [
        "4079946631207733529",
        "4102775318816095741",
    ]
    trade = unwrap(document(PAID))[0]
    assert unwrap(trade) == [trade]
    assert unwrap({"trades_sold_get_response": {"total_results": 0}}) == []


def test_the_adapter_reads_the_exact_tid() -> None:
    assert native_id(payload()) == "4087312065519582261"
    assert native_id({"tid": 4087312065519582261}) == "4087312065519582261"
    with pytest.raises(InvalidInput) as caught:
        native_id({"tid": 4.087312065519582e18})
    assert caught.value.path == "tid"


def test_a_top_error_response_is_invalid_input_carrying_its_code_and_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        unwrap(document("error_response.json"))
    assert caught.value.path == "error_response"
    assert "TOP error 27: Invalid session" in str(caught.value)
    assert "invalid-sessionkey" in str(caught.value)


def test_a_tmc_notification_is_refused_and_a_tmc_full_trade_is_unwrapped() -> None:
    with pytest.raises(InvalidInput) as caught:
        unwrap(document("tmc_trade_buyer_pay.json"))
    assert "4087312065519582261" in str(caught.value)
    assert "taobao.trade.fullinfo.get" in str(caught.value)
    trade = payload()
    message = {"Topic": "taobao_trade_TradeChanged", "Content": json.dumps(trade)}
    assert unwrap(message) == [trade]


@pytest.mark.parametrize(
    "document",
    [
        [1],
        "trade",
        {"trade": {}},
        {"trade_fullinfo_get_response": {"trade": {"status": "x"}}},
        {"trades_sold_get_response": {"trades": [{"tid": 1}]}},
        {"Topic": "t", "Content": "{"},
    ],
)
def test_anything_else_is_invalid_input(document: Any) -> None:
    with pytest.raises(InvalidInput):
        unwrap(document)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (payload(tid_str=None, tid=None), "tid"),
        (payload(tid_str="TB123"), "tid_str"),
        (payload(status=None), "status"),
        (payload(created=None), "created"),
        (payload(created="0001-01-01 00:00:00"), "created"),
        (payload(created="2026-03-08T21:14:05+08:00"), "created"),
        (payload(created=1772975645), "created"),
        (payload(pay_time="yesterday"), "pay_time"),
        (payload(payment=214.0), "payment"),
        (payload(payment="lots"), "payment"),
        (payload(post_fee="NaN"), "post_fee"),
        (payload(orders=None), "orders"),
        (payload(orders={"order": []}), "orders.order"),
        (payload(orders={"order": "two"}), "orders.order"),
        (payload(orders={"order": [5]}), "orders.order[0]"),
        (payload(receiver_state=44), "receiver_state"),
        (with_line(num="2"), "orders.order[0].num"),
        (with_line(num=0), "orders.order[0].num"),
        (with_line(price=None), "orders.order[0].price"),
        (with_line(outer_sku_id=12345), "orders.order[0].outer_sku_id"),
        (with_line(sku_id="sku-1"), "orders.order[0].sku_id"),
        (with_line(UNPAID, payment=None), "orders.order[0].payment"),
    ],
)
def test_a_malformed_field_is_invalid_input_with_its_path(body: dict[str, Any], path: str) -> None:
    assert rejection(body).path == path


TRADE_KEYS = sorted(payload())
LINE_KEYS = sorted(payload()["orders"]["order"][0])


@settings(max_examples=300, deadline=None)
@given(where=st.sampled_from(["trade", "line"]), index=st.integers(0, 200), value=json_values)
def test_any_value_in_any_field_either_maps_or_is_invalid_input(
    where: str, index: int, value: Any
) -> None:
    body = payload()
    target, keys = (
        (body, TRADE_KEYS) if where == "trade" else (body["orders"]["order"][0], LINE_KEYS)
    )
    target[keys[index % len(keys)]] = value
    try:
        order = map_order(body, shop=SHOP, rates=RATES)
    except InvalidInput as e:
        assert str(e)
    else:
        assert order.id.startswith("TB")
