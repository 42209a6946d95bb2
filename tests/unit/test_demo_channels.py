from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.demo import demo_catalogue
from ingest.demo_channels import (
    CHANNEL_WEIGHTS,
    DemoOrder,
    generate_orders,
    required_stock_all,
)
from ingest.process import ADAPTERS
from normalize.process import MAPPERS
from normalize.rates import DEFAULT_RATES, RateTable
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError
from schemas.order import Channel, Order, OrderStatus

START = datetime(2026, 11, 11, tzinfo=SHANGHAI)
RATES = RateTable.from_mapping(DEFAULT_RATES)
ALL_CHANNELS = {"taobao", "jd", "pdd", "douyin", "wechat", "shopify", "amazon"}
CATALOGUE_SKUS = {item.sku for item in demo_catalogue()}


def mapped(order: DemoOrder) -> Order:
    return MAPPERS[Channel(order.channel)](order.payload, shop=order.shop, rates=RATES)


def of(orders: list[DemoOrder], channel: str) -> list[DemoOrder]:
    return [order for order in orders if order.channel == channel]


@pytest.fixture(scope="module")
def orders() -> list[DemoOrder]:
    return generate_orders(200, seed=7, start=START)


def test_every_order_maps_to_paid_with_its_channels_mapper(orders: list[DemoOrder]) -> None:
    for order in orders:
        result = mapped(order)
        assert result.status is OrderStatus.PAID, (order.channel, result.native_status)
        assert result.channel == order.channel
        assert result.shop == order.shop


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), n=st.integers(min_value=0, max_value=40))
def test_any_seed_gives_orders_that_map_to_paid(seed: int, n: int) -> None:
    orders = generate_orders(n, seed=seed, start=START)
    assert len(orders) == n
    assert {mapped(order).status for order in orders} <= {OrderStatus.PAID}


def test_all_seven_channels_appear_in_two_hundred_orders(orders: list[DemoOrder]) -> None:
    assert {order.channel for order in orders} == ALL_CHANNELS


def test_the_channel_mix_follows_the_weights() -> None:
    counts = Counter(order.channel for order in generate_orders(4000, seed=3, start=START))
    for channel, weight in CHANNEL_WEIGHTS.items():
        assert abs(counts[channel.value] / 4000 - weight / 100) < 0.03, channel


def test_native_ids_are_unique_across_the_run() -> None:
    orders = generate_orders(1000, seed=11, start=START)
    ids = [ADAPTERS[Channel(o.channel)].native_id(o.payload) for o in orders]
    assert len(set(ids)) == len(ids)
    assert len({mapped(o).id for o in orders}) == len(orders)


def test_the_same_seed_gives_the_same_orders_and_another_seed_does_not() -> None:
    first = generate_orders(60, seed=5, start=START)
    assert first == generate_orders(60, seed=5, start=START)
    assert first != generate_orders(60, seed=6, start=START)


def test_big_ids_survive_a_json_round_trip(orders: list[DemoOrder]) -> None:
    douyin = of(orders, "douyin")
    assert all(sku["sku_id"] > 2**53 for o in douyin for sku in o.payload["sku_order_list"])
    assert all(o.payload["tid"] > 2**53 for o in of(orders, "taobao"))
    for order in orders:
        text = json.dumps(order.payload, ensure_ascii=False)
        again = DemoOrder(order.channel, order.shop, json.loads(text))
        assert again == order
        assert mapped(again) == mapped(order)


def test_required_stock_equals_the_sum_of_mapped_line_quantities(
    orders: list[DemoOrder],
) -> None:
    needed = required_stock_all(orders, RATES)
    lines = [line for order in orders for line in mapped(order).lines]
    assert sum(needed.values()) == sum(line.quantity for line in lines)
    for sku, units in needed.items():
        assert units == sum(line.quantity for line in lines if line.sku == sku)
    assert set(needed) <= CATALOGUE_SKUS


def test_orders_sell_one_to_three_catalogue_skus_one_to_three_units_each(
    orders: list[DemoOrder],
) -> None:
    for order in orders:
        lines = mapped(order).lines
        assert 1 <= len(lines) <= 3
        assert len({line.sku for line in lines}) == len(lines)
        assert {line.sku for line in lines} <= CATALOGUE_SKUS
        assert all(1 <= line.quantity <= 3 for line in lines)


def test_each_channels_adapter_takes_the_payload_as_a_bare_order(
    orders: list[DemoOrder],
) -> None:
    for order in orders:
        assert ADAPTERS[Channel(order.channel)].unwrap(order.payload) == [order.payload]


def test_orders_come_oldest_first_after_the_start(orders: list[DemoOrder]) -> None:
    created = [mapped(order).created_at for order in orders]
    assert created[0] > START
    assert created == sorted(created)


def test_amounts_add_up_to_what_the_buyer_paid(orders: list[DemoOrder]) -> None:
    for order in orders:
        result = mapped(order)
        expected = result.goods_amount - result.discount_amount + result.shipping_amount
        if order.channel == "amazon":  # OrderTotal includes US sales tax
            assert result.paid_amount >= expected
        else:
            assert result.paid_amount == expected, order.channel
        assert sum(line.line_total for line in result.lines) <= result.goods_amount


def test_taobao_trades_use_big_tids_yuan_strings_and_beijing_times(
    orders: list[DemoOrder],
) -> None:
    for trade in (o.payload for o in of(orders, "taobao")):
        assert isinstance(trade["tid"], int) and len(str(trade["tid"])) == 19
        assert trade["tid_str"] == str(trade["tid"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", trade["pay_time"])
        assert Decimal(trade["payment"]) > 0 and isinstance(trade["payment"], str)
        assert trade["receiver_mobile"].startswith("$") and trade["oaid"]


def test_jd_orders_use_string_ids_and_quantities_and_short_provinces(
    orders: list[DemoOrder],
) -> None:
    for order in (o.payload for o in of(orders, "jd")):
        assert isinstance(order["orderId"], str) and order["orderId"].isdigit()
        assert all(isinstance(item["itemTotal"], str) for item in order["itemInfoList"])
        assert not order["consigneeInfo"]["province"].endswith("省")
        assert "*******" in order["consigneeInfo"]["mobile"]


def test_pdd_orders_use_dated_order_sns_yuan_numbers_and_masks(orders: list[DemoOrder]) -> None:
    for order in (o.payload for o in of(orders, "pdd")):
        day = datetime.strptime(order["created_time"], "%Y-%m-%d %H:%M:%S").strftime("%y%m%d")
        assert re.fullmatch(rf"{day}-\d{{15}}", order["order_sn"])
        assert isinstance(order["pay_amount"], float | int)
        assert "****" in order["receiver_phone_mask"] and order["receiver_phone"].startswith("$")


def test_douyin_orders_use_fen_integers_and_unix_seconds(orders: list[DemoOrder]) -> None:
    for order in (o.payload for o in of(orders, "douyin")):
        assert isinstance(order["order_id"], str) and len(order["order_id"]) == 19
        assert isinstance(order["pay_amount"], int) and isinstance(order["pay_time"], int)
        assert order["encrypt_post_tel"].startswith("$$") and "*" in order["mask_post_tel"]


def test_wechat_orders_use_fen_integers_and_unix_seconds(orders: list[DemoOrder]) -> None:
    for order in (o.payload for o in of(orders, "wechat")):
        price = order["order_detail"]["price_info"]
        assert order["status"] == 20 and isinstance(price["order_price"], int)
        assert isinstance(order["order_detail"]["pay_info"]["pay_time"], int)


def test_amazon_orders_are_unshipped_in_usd_with_their_items(orders: list[DemoOrder]) -> None:
    for order in (o.payload for o in of(orders, "amazon")):
        assert order["OrderStatus"] == "Unshipped" and order["OrderTotal"]["CurrencyCode"] == "USD"
        assert re.fullmatch(r"\d{3}-\d{7}-\d{7}", order["AmazonOrderId"])
        assert order["PurchaseDate"].endswith("Z") and order["OrderItems"]


def test_a_later_start_shifts_every_order() -> None:
    later = datetime(2026, 12, 12, 4, 0, tzinfo=UTC)
    assert all(mapped(o).created_at > later for o in generate_orders(30, seed=1, start=later))


@pytest.mark.parametrize(("n", "start"), [(-1, START), (1, datetime(2026, 11, 11))])
def test_unusable_arguments_are_a_configuration_error(n: int, start: datetime) -> None:
    with pytest.raises(ConfigurationError):
        generate_orders(n, seed=1, start=start)
