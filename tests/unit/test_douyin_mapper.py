from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import douyin, pdd
from normalize import pdd as pdd_mapper
from normalize.douyin import map_order
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Order, OrderStatus
from tests.strategies import json_values

FIXTURES = Path(__file__).parents[1] / "fixtures"
SHOP = "douyin-4463798"
RATES = RateTable.from_mapping({})
EIGHT_HOURS = timedelta(hours=8)
EPOCH = datetime(1970, 1, 1)


def document(name: str) -> Any:
    return json.loads((FIXTURES / "douyin" / name).read_text(encoding="utf-8"))


def payload(name: str = "order_detail_preparing.json", **changes: Any) -> dict[str, Any]:
    body = dict(douyin.unwrap(document(name))[0])
    body.update(changes)
    return body


def mapped(name: str = "order_detail_preparing.json", **changes: Any) -> Order:
    return map_order(payload(name, **changes), shop=SHOP, rates=RATES)


def rejection(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        map_order(body, shop=SHOP, rates=RATES)
    return caught.value


def test_the_19_digit_order_id_is_kept_exactly_behind_the_dy_prefix() -> None:
    order = mapped()
    assert order.native_id == "6930412883651765432"
    assert order.id == "DY6930412883651765432"
    assert mapped(order_id=6930412883651765432).native_id == "6930412883651765432"


def test_sku_ids_beyond_2_to_the_53_are_kept_exactly_as_strings() -> None:
    raw = payload()["sku_order_list"][0]["sku_id"]
    assert isinstance(raw, int) and raw > 2**53 and int(float(raw)) != raw
    lines = mapped().lines
    assert [line.channel_sku_id for line in lines] == ["3598472810345716737", "3598472810345717003"]


def test_a_sku_id_that_went_through_a_float_is_rejected() -> None:
    body = payload()
    body["sku_order_list"][0]["sku_id"] = 3.598472810345717e18
    assert rejection(body).path == "sku_order_list[0].sku_id"


def test_unix_seconds_become_aware_times_at_plus_eight() -> None:
    order = mapped()
    assert order.created_at == datetime(2025, 12, 15, 2, 21, 7, tzinfo=UTC)
    assert order.created_at.utcoffset() == EIGHT_HOURS
    assert order.paid_at == datetime(2025, 12, 15, 10, 21, 20, tzinfo=SHANGHAI)
    assert order.updated_at == datetime(2025, 12, 15, 10, 21, 30, tzinfo=SHANGHAI)
    assert order.model_dump(mode="json")["created_at"] == "2025-12-15T10:21:07+08:00"


def test_a_zero_time_means_not_yet() -> None:
    order = mapped("order_detail_unpaid.json")
    assert order.paid_at is None
    assert mapped(update_time=0).updated_at == mapped().created_at


@pytest.mark.parametrize("created", [0, -5, "2025-12-15 10:21:07", 1765765267.0, 1765765267000000])
def test_a_create_time_that_is_not_plausible_unix_seconds_is_rejected(created: Any) -> None:
    assert rejection(payload(create_time=created)).path == "create_time"


def test_fen_integers_become_exact_yuan() -> None:
    order = mapped()
    assert order.currency == "CNY"
    assert order.paid_amount == Decimal("154.70")
    assert order.model_dump(mode="json")["paid_amount"] == "154.70"
    assert order.goods_amount == Decimal("169.70")
    assert order.discount_amount == Decimal("15.00")
    assert order.shipping_amount == 0
    assert order.paid_cny == Decimal("154.70")


def test_the_amounts_add_up_with_postage() -> None:
    order = mapped("order_detail_shipped.json")
    assert (order.goods_amount, order.shipping_amount, order.paid_amount) == (
        Decimal("59.90"),
        Decimal("6.00"),
        Decimal("65.90"),
    )
    assert order.goods_amount - order.discount_amount + order.shipping_amount == order.paid_amount


def test_lines_carry_the_merchant_sku_falling_back_to_the_product_code() -> None:
    lines = mapped().lines
    assert [line.sku for line in lines] == ["DY-MUG-350-BLU", "TEA-GIFT-01"]
    assert [line.quantity for line in lines] == [2, 1]
    assert [line.unit_price for line in lines] == [Decimal("59.90"), Decimal("49.90")]
    assert [line.line_total for line in lines] == [Decimal("109.80"), Decimal("44.90")]
    assert lines[1].title == "龙井茶礼盒 250g"


def test_a_line_total_leaves_out_the_postage_share_of_its_payment() -> None:
    [line] = mapped("order_detail_shipped.json").lines
    assert line.line_total == Decimal("59.90")


def test_a_line_without_origin_amount_derives_its_unit_price() -> None:
    body = payload()
    del body["sku_order_list"][0]["origin_amount"]
    assert map_order(body, shop=SHOP, rates=RATES).lines[0].unit_price == Decimal("59.90")
    del body["sku_order_list"][0]["sum_amount"]
    assert map_order(body, shop=SHOP, rates=RATES).lines[0].unit_price == Decimal("54.90")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("order_detail_unpaid.json", OrderStatus.PENDING_PAYMENT),
        ("order_detail_preparing.json", OrderStatus.PAID),
        ("order_detail_shipped.json", OrderStatus.SHIPPED),
        ("order_detail_completed.json", OrderStatus.COMPLETED),
        ("order_detail_cancelled.json", OrderStatus.CANCELLED),
        ("order_detail_refunded.json", OrderStatus.REFUNDED),
    ],
)
def test_each_fixture_state_maps_to_its_canonical_status(name: str, status: OrderStatus) -> None:
    assert mapped(name).status == status


@pytest.mark.parametrize(
    ("order_status", "main_status", "expected"),
    [
        (1, 1, OrderStatus.PENDING_PAYMENT),
        (105, 105, OrderStatus.PAID),
        (2, 2, OrderStatus.PAID),
        (101, 101, OrderStatus.SHIPPED),
        (3, None, OrderStatus.SHIPPED),
        (4, 4, OrderStatus.CANCELLED),
        (4, 21, OrderStatus.REFUNDED),
        (4, 22, OrderStatus.REFUNDED),
        (4, 39, OrderStatus.REFUNDED),
        (5, 5, OrderStatus.COMPLETED),
    ],
)
def test_status_follows_order_status_with_main_status_telling_refunds_apart(
    order_status: int, main_status: int | None, expected: OrderStatus
) -> None:
    assert mapped(order_status=order_status, main_status=main_status).status == expected


def test_native_status_shows_main_status_only_when_it_adds_something() -> None:
    assert mapped().native_status == "order_status=2"
    assert mapped("order_detail_refunded.json").native_status == "order_status=4/main_status=21"


@pytest.mark.parametrize(
    ("key", "value"), [("order_status", 7), ("order_status", "2"), ("main_status", "21")]
)
def test_an_unknown_or_malformed_status_is_rejected(key: str, value: Any) -> None:
    assert rejection(payload(**{key: value})).path == key


def test_the_list_response_maps_risk_held_paid_and_part_shipped_cod_orders() -> None:
    paid, part = (
        map_order(o, shop=SHOP, rates=RATES) for o in douyin.unwrap(document("search_list.json"))
    )
    assert paid.status == OrderStatus.PAID
    assert part.status == OrderStatus.SHIPPED
    assert part.paid_at is None
    assert part.flags == ("cod", "after_sale")


def test_presale_is_flagged_from_the_trade_or_the_sku_type() -> None:
    assert mapped(trade_type=2).flags == ("presale",)
    body = payload()
    body["sku_order_list"][1]["pre_sale_type"] = 1
    assert map_order(body, shop=SHOP, rates=RATES).flags == ("presale",)


def test_encrypted_name_phone_and_address_are_kept_verbatim() -> None:
    body = payload()
    recipient = mapped().recipient
    assert recipient is not None
    assert recipient.phone == body["encrypt_post_tel"]
    assert recipient.phone is not None
    assert recipient.phone.startswith("$$") and recipient.phone.endswith("$1$$")
    assert recipient.name == body["encrypt_post_receiver"]
    assert recipient.address == body["post_addr"]["encrypt_detail"]


def test_masked_values_are_used_when_nothing_is_encrypted() -> None:
    body = payload(encrypt_post_tel="", encrypt_post_receiver=None)
    body["post_addr"] = {**body["post_addr"], "encrypt_detail": ""}
    recipient = map_order(body, shop=SHOP, rates=RATES).recipient
    assert recipient is not None
    assert recipient.name == "王**"
    assert recipient.phone == "1********32"
    assert recipient.address == "平江路****号"


def test_regions_are_full_names_and_a_municipality_replaces_its_placeholder_city() -> None:
    recipient = mapped().recipient
    assert recipient is not None
    assert (recipient.country, recipient.province, recipient.city, recipient.district) == (
        "CN",
        "江苏省",
        "苏州市",
        "姑苏区",
    )
    body = payload()
    body["post_addr"].update(province={"name": "江苏"}, city={"name": "苏州"})
    short = map_order(body, shop=SHOP, rates=RATES).recipient
    assert short is not None and (short.province, short.city) == ("江苏省", "苏州市")
    beijing = mapped("order_detail_shipped.json").recipient
    assert beijing is not None and (beijing.province, beijing.city) == ("北京市", "北京市")


def test_regions_fall_back_to_the_masked_address() -> None:
    recipient = mapped(post_addr=None).recipient
    assert recipient is not None
    assert (recipient.province, recipient.address) == ("江苏省", "平江路****号")


def test_an_order_without_any_recipient_data_has_no_recipient() -> None:
    order = mapped(
        post_addr=None,
        mask_post_addr=None,
        encrypt_post_tel="",
        encrypt_post_receiver="",
        mask_post_tel="",
        mask_post_receiver="",
    )
    assert order.recipient is None


def break_line(key: str, value: Any) -> dict[str, Any]:
    body = payload()
    body["sku_order_list"][0][key] = value
    return body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({k: v for k, v in payload().items() if k != "order_id"}, "order_id"),
        (payload(order_id="6930412883651765432x"), "order_id"),
        (payload(order_status=None), "order_status"),
        (payload(create_time=None), "create_time"),
        (payload(pay_amount=None), "pay_amount"),
        (payload(pay_amount=154.7), "pay_amount"),
        (payload(pay_amount="154.70"), "pay_amount"),
        (payload(post_amount=True), "post_amount"),
        (payload(pay_time="soon"), "pay_time"),
        (payload(sku_order_list=[]), "sku_order_list"),
        (payload(sku_order_list={}), "sku_order_list"),
        (payload(post_addr="苏州"), "post_addr"),
        (payload(post_addr={"province": "江苏"}), "post_addr.province"),
        (payload(post_addr={"city": {"name": 320500}}), "post_addr.city.name"),
        (payload(encrypt_post_tel=13800000000), "encrypt_post_tel"),
        (break_line("item_num", None), "sku_order_list[0].item_num"),
        (break_line("item_num", -1), "sku_order_list[0].item_num"),
        (break_line("pay_amount", None), "sku_order_list[0].pay_amount"),
        (break_line("origin_amount", 59.9), "sku_order_list[0].origin_amount"),
        (break_line("out_sku_id", 1), "sku_order_list[0].out_sku_id"),
    ],
)
def test_a_missing_or_malformed_field_is_invalid_input_with_its_path(
    body: dict[str, Any], path: str
) -> None:
    assert rejection(body).path == path


def test_the_detail_and_list_responses_unwrap_to_their_orders() -> None:
    [detail] = douyin.unwrap(document("order_detail_preparing.json"))
    assert detail["order_id"] == "6930412883651765432"
    orders = douyin.unwrap(document("search_list.json"))
    assert [o["order_id"] for o in orders] == ["6930415589037214473", "6930409983167205120"]
    assert douyin.unwrap(detail) == [detail]
    assert douyin.unwrap({"code": "10000", "data": {"shop_order_list": []}}) == []


def test_a_failed_response_is_invalid_input_carrying_code_and_messages() -> None:
    with pytest.raises(InvalidInput) as caught:
        douyin.unwrap(document("error_order_not_found.json"))
    assert caught.value.path == "code"
    assert "50002" in str(caught.value)
    assert "业务处理失败" in str(caught.value)
    assert "订单不存在" in str(caught.value)


@pytest.mark.parametrize(
    ("document_", "path"),
    [
        ("order", None),
        ({"data": {}}, None),
        ({"code": 10000, "data": None}, "data"),
        ({"code": 10000, "data": {"page": 0}}, "data"),
        ({"code": 10000, "data": {"shop_order_detail": {"shop_id": 1}}}, "data.shop_order_detail"),
        ({"code": 10000, "data": {"shop_order_list": [{}]}}, "data.shop_order_list[0]"),
        ({"code": True, "data": {}}, "code"),
    ],
)
def test_any_other_document_is_invalid_input(document_: Any, path: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        douyin.unwrap(document_)
    assert caught.value.path == path


def test_the_native_id_is_the_order_id_as_an_exact_string() -> None:
    assert douyin.native_id({"order_id": 6930412883651765432}) == "6930412883651765432"
    assert douyin.native_id(payload()) == "6930412883651765432"
    for bad in (None, 6.930412883651765e18, True, 0, "", "69x"):
        with pytest.raises(InvalidInput):
            douyin.native_id({"order_id": bad})


beijing_walls = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31))


@settings(max_examples=200, deadline=None)
@given(wall=beijing_walls)
def test_the_same_instant_from_douyin_seconds_and_a_pdd_beijing_string_normalizes_alike(
    wall: datetime,
) -> None:
    wall = wall.replace(microsecond=0)
    seconds = int((wall - EIGHT_HOURS - EPOCH).total_seconds())  # Beijing has no DST since 1991
    dy = mapped(create_time=seconds, pay_time=0, update_time=0)
    pdd_file = FIXTURES / "pdd" / "order_info_awaiting_shipment.json"
    pdd_body = dict(pdd.unwrap(json.loads(pdd_file.read_text(encoding="utf-8")))[0])
    pdd_body.update(
        created_time=wall.strftime("%Y-%m-%d %H:%M:%S"), pay_time="", confirm_time="", updated_at=""
    )
    pd = pdd_mapper.map_order(pdd_body, shop=SHOP, rates=RATES)
    assert dy.created_at == pd.created_at
    assert dy.created_at.replace(tzinfo=None) == pd.created_at.replace(tzinfo=None) == wall
    assert dy.created_at.utcoffset() == pd.created_at.utcoffset() == EIGHT_HOURS
    assert (
        dy.model_dump(mode="json")["created_at"]
        == pd.model_dump(mode="json")["created_at"]
        == wall.isoformat() + "+08:00"
    )


ORDER_KEYS = sorted(payload())
LINE_KEYS = sorted(payload()["sku_order_list"][0])
ADDRESS_KEYS = sorted(payload()["post_addr"])


@settings(max_examples=300, deadline=None)
@given(
    where=st.sampled_from(["order", "line", "address"]),
    index=st.integers(0, 200),
    value=json_values,
)
def test_any_value_in_any_field_either_maps_or_is_invalid_input(
    where: str, index: int, value: Any
) -> None:
    body = payload()
    target, keys = {
        "order": (body, ORDER_KEYS),
        "line": (body["sku_order_list"][0], LINE_KEYS),
        "address": (body["post_addr"], ADDRESS_KEYS),
    }[where]
    target[keys[index % len(keys)]] = value
    try:
        order = map_order(body, shop=SHOP, rates=RATES)
    except InvalidInput as e:
        assert str(e)
    else:
        assert order.id.startswith("DY")
