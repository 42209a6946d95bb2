from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ingest.demo import (
    demo_catalogue,
    demo_warehouse,
    generate_shopify_orders,
    iter_shopify_orders,
    required_stock,
)
from schemas.errors import ConfigurationError

START = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
DOMESTIC, INTL = "tongqufang.myshopify.com", "tongqufang-intl.myshopify.com"


def test_the_catalogue_has_a_dozen_distinct_merchant_skus() -> None:
    skus = [item.sku for item in demo_catalogue()]
    assert len(skus) == 12 == len(set(skus))
    assert "TQF-TEE-RED-110" in skus
    assert all(item.price_cny > item.price_usd > 0 for item in demo_catalogue())


def test_the_warehouse_is_in_hangzhou() -> None:
    warehouse = demo_warehouse()
    assert (warehouse.code, warehouse.name, warehouse.province, warehouse.city) == (
        "WH-HZ",
        "杭州仓",
        "浙江省",
        "杭州市",
    )


def test_the_same_seed_gives_the_same_orders_and_another_seed_does_not() -> None:
    first = generate_shopify_orders(20, seed=7, start=START)
    assert first == generate_shopify_orders(20, seed=7, start=START)
    assert first != generate_shopify_orders(20, seed=8, start=START)


def test_orders_have_unique_sequential_big_ids_and_names() -> None:
    orders = [body for _, body in generate_shopify_orders(30, seed=1, start=START)]
    assert [o["id"] for o in orders] == [6200407294252 + i for i in range(30)]
    assert all(len(str(o["id"])) == 13 for o in orders)
    assert [o["name"] for o in orders[:3]] == ["#1001", "#1002", "#1003"]


def test_each_shop_sells_in_its_own_currency_and_clock() -> None:
    orders = generate_shopify_orders(40, seed=3, start=START)
    offsets = {DOMESTIC: timedelta(hours=8), INTL: timedelta(hours=-5)}
    currencies = {DOMESTIC: "CNY", INTL: "USD"}
    assert {shop for shop, _ in orders} == {DOMESTIC, INTL}
    for shop, body in orders:
        assert body["currency"] == currencies[shop]
        assert datetime.fromisoformat(body["created_at"]).utcoffset() == offsets[shop]
        assert body["financial_status"] == "paid"


def test_orders_follow_each_other_in_time_after_the_start() -> None:
    times = [
        datetime.fromisoformat(b["created_at"])
        for _, b in generate_shopify_orders(25, seed=5, start=START)
    ]
    assert times[0] > START
    assert times == sorted(times)


def test_amount_strings_are_consistent() -> None:
    for _, body in generate_shopify_orders(40, seed=11, start=START):
        goods = sum(Decimal(i["price"]) * i["quantity"] for i in body["line_items"])
        shipping = Decimal(body["total_shipping_price_set"]["shop_money"]["amount"])
        assert Decimal(body["total_line_items_price"]) == goods
        assert Decimal(body["subtotal_price"]) == goods - Decimal(body["total_discounts"])
        assert Decimal(body["total_price"]) == Decimal(body["subtotal_price"]) + shipping
        assert 1 <= len(body["line_items"]) <= 3
        assert all(1 <= i["quantity"] <= 3 for i in body["line_items"])


def test_recipient_phones_are_masked() -> None:
    for _, body in generate_shopify_orders(20, seed=2, start=START):
        assert (
            "****" in body["shipping_address"]["phone"]
            or "***-" in body["shipping_address"]["phone"]
        )


def test_required_stock_sums_quantities_per_sku() -> None:
    orders = generate_shopify_orders(15, seed=9, start=START)
    needed = required_stock(orders)
    assert sum(needed.values()) == sum(
        i["quantity"] for _, body in orders for i in body["line_items"]
    )
    assert set(needed) <= {item.sku for item in demo_catalogue()}


def test_a_single_shop_is_domestic() -> None:
    orders = generate_shopify_orders(5, seed=1, start=START, shops=("solo.myshopify.com",))
    assert {(shop, body["currency"]) for shop, body in orders} == {("solo.myshopify.com", "CNY")}


@pytest.mark.parametrize(
    ("n", "start", "shops"),
    [(-1, START, (DOMESTIC,)), (1, datetime(2026, 3, 1), (DOMESTIC,)), (1, START, ())],
)
def test_unusable_arguments_are_a_configuration_error(
    n: int, start: datetime, shops: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigurationError):
        generate_shopify_orders(n, seed=1, start=start, shops=shops)


def test_times_are_written_with_the_shop_offset() -> None:
    _, body = generate_shopify_orders(1, seed=1, start=START, shops=(DOMESTIC,))[0]
    created = datetime.fromisoformat(body["created_at"])
    assert created.tzinfo == timezone(timedelta(hours=8))
    assert body["created_at"].endswith("+08:00")


def test_the_lazy_generator_gives_the_same_orders_and_refuses_bad_arguments_at_once() -> None:
    lazy = iter_shopify_orders(10**9, seed=7, start=START)  # nothing is made until asked
    assert [next(lazy) for _ in range(25)] == generate_shopify_orders(25, seed=7, start=START)
    with pytest.raises(ConfigurationError):
        iter_shopify_orders(5, seed=7, start=START.replace(tzinfo=None))
