"""Every channel fixture, as the channel's API returns it, maps to the status its file stands for.

Each file goes through its adapter's `unwrap` and its channel's mapper; the table below says which
canonical status every order of every file must get (list responses hold several orders, in file
order). The checks hold the fixtures to the traps the channels really set: ids as exact strings
(19-digit Taobao tids and Douyin order ids, Shopify ids over 2^53), money as exact Decimals that add
up the way the file says (fen, yuan JSON numbers, shop money vs presentment money, Amazon's
ItemPrice = unit price x quantity), and every time expressed in Beijing time (+08:00), whatever
the channel sent (naive Beijing strings, Unix seconds, `-05:00`, `Z`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ingest import amazon as amazon_in
from ingest import douyin as douyin_in
from ingest import jd as jd_in
from ingest import pdd as pdd_in
from ingest import shopify as shopify_in
from ingest import taobao as taobao_in
from ingest import wechat as wechat_in
from normalize.process import MAPPERS
from normalize.rates import DEFAULT_RATES, RateTable
from schemas.order import ID_PREFIX, Channel, Order, OrderStatus

FIXTURES = Path(__file__).parents[1] / "fixtures"
RATES = RateTable.from_mapping(DEFAULT_RATES)
SKIPPED_PREFIXES = ("error", "tmc_")  # API errors and notify-only pushes: ingest refuses them
S = OrderStatus

ADAPTERS: Mapping[str, ModuleType] = {
    "taobao": taobao_in, "jd": jd_in, "pdd": pdd_in, "douyin": douyin_in,
    "wechat": wechat_in, "shopify": shopify_in, "amazon": amazon_in,
}

# file -> the canonical status of each order it holds, in the order the file lists them.
EXPECTED: Mapping[str, Mapping[str, tuple[OrderStatus, ...]]] = {
    "taobao": {
        "trade_fullinfo_unpaid.json": (S.PENDING_PAYMENT,),
        "trade_fullinfo_paid.json": (S.PAID,),
        "trade_fullinfo_shipped.json": (S.SHIPPED,),
        "trade_closed_by_taobao.json": (S.CANCELLED,),
        "trade_closed_refunded.json": (S.REFUNDED,),
        # WAIT_BUYER_CONFIRM_GOODS, then a presale whose balance is unpaid (WAIT_BUYER_PAY).
        "trades_sold_get.json": (S.SHIPPED, S.PENDING_PAYMENT),
    },
    "jd": {
        # Cash on delivery: shippable before payment, paymentConfirmTime "0001-01-01 00:00:00".
        "order_cod_unpaid.json": (S.PAID,),
        "order_get_paid.json": (S.PAID,),
        "order_shipped.json": (S.SHIPPED,),
        # Paid, then cancelled before shipment: JD cancels and refunds in one step.
        "order_cancelled.json": (S.CANCELLED,),
        "order_search.json": (S.SHIPPED, S.COMPLETED, S.REVIEW_HOLD),
    },
    "pdd": {
        # A group buy still forming is paid but not yet a deal (confirm_status 0).
        "order_info_group_forming.json": (S.PENDING_PAYMENT,),
        "order_info_awaiting_shipment.json": (S.PAID,),
        "order_info_shipped.json": (S.SHIPPED,),
        "order_info_received.json": (S.DELIVERED,),
        "order_info_group_failed.json": (S.CANCELLED,),
        "order_info_refunded.json": (S.REFUNDED,),
        # Shipped with an after-sale open (refund_status 2), then a paid presale.
        "order_list.json": (S.SHIPPED, S.PAID),
    },
    "douyin": {
        "order_detail_unpaid.json": (S.PENDING_PAYMENT,),
        "order_detail_preparing.json": (S.PAID,),
        "order_detail_shipped.json": (S.SHIPPED,),
        "order_detail_completed.json": (S.COMPLETED,),
        "order_detail_cancelled.json": (S.CANCELLED,),
        "order_detail_refunded.json": (S.REFUNDED,),
        "search_list.json": (S.PAID, S.SHIPPED),  # 105 paid, 101 part shipped
    },
    "wechat": {
        "order_unpaid.json": (S.PENDING_PAYMENT,),
        "order_awaiting_shipment.json": (S.PAID,),
        "order_shipped.json": (S.SHIPPED,),
        "order_completed.json": (S.COMPLETED,),
        "order_cancelled.json": (S.CANCELLED,),
        "order_refunded.json": (S.REFUNDED,),
    },
    "shopify": {
        "orders_create_pending.json": (S.PENDING_PAYMENT,),
        "orders_create.json": (S.PAID,),
        "orders_paid.json": (S.PAID,),
        "orders_fulfilled.json": (S.SHIPPED,),
        "orders_cancelled.json": (S.CANCELLED,),
        "orders_updated_refunded.json": (S.REFUNDED,),
    },
    "amazon": {
        "order_pending.json": (S.PENDING_PAYMENT,),
        "order_unshipped.json": (S.PAID,),
        "order_shipped.json": (S.SHIPPED,),
        "order_canceled.json": (S.CANCELLED,),
        "orders_page.json": (S.SHIPPED, S.PENDING_PAYMENT),  # PartiallyShipped, Pending
    },
}

# The states each channel's order API has, which its folder must cover. Left out on purpose:
# - JD: no unpaid state (order.search returns online-paid orders only once paid; cash-on-delivery
#   ones are shippable, hence paid) and no refunded state (a paid order cancelled before shipment
#   is TRADE_CANCELED and refunded by JD; after-sale refunds leave it FINISHED_L).
# - Amazon: OrderStatus has no refunded value (refunds live in the Finances API).
# - PDD: the order APIs list paid orders only; a forming group buy is the "not yet a deal" state.
CHANNEL_STATES: Mapping[str, frozenset[OrderStatus]] = {
    "taobao": frozenset({S.PENDING_PAYMENT, S.PAID, S.SHIPPED, S.CANCELLED, S.REFUNDED}),
    "jd": frozenset({S.PAID, S.SHIPPED, S.COMPLETED, S.CANCELLED}),
    "pdd": frozenset({S.PENDING_PAYMENT, S.PAID, S.SHIPPED, S.DELIVERED, S.CANCELLED,
                      S.REFUNDED}),
    "douyin": frozenset({S.PENDING_PAYMENT, S.PAID, S.SHIPPED, S.COMPLETED, S.CANCELLED,
                         S.REFUNDED}),
    "wechat": frozenset({S.PENDING_PAYMENT, S.PAID, S.SHIPPED, S.COMPLETED, S.CANCELLED,
                         S.REFUNDED}),
    "shopify": frozenset({S.PENDING_PAYMENT, S.PAID, S.SHIPPED, S.CANCELLED, S.REFUNDED}),
    "amazon": frozenset({S.PENDING_PAYMENT, S.PAID, S.SHIPPED, S.CANCELLED}),
}


def _fen(value: Any) -> Decimal:
    return Decimal(int(value)).scaleb(-2)


def _amazon_sum(payload: Mapping[str, Any], key: str) -> Decimal:
    return sum((Decimal(item[key]["Amount"]) for item in payload["OrderItems"] if key in item),
               Decimal(0))


def _amazon_paid(payload: Mapping[str, Any]) -> Decimal:
    total = payload.get("OrderTotal")
    return Decimal(0) if total is None else Decimal(total["Amount"])


# What the buyer paid, read straight from the payload in the channel's own units.
PAID_IN_FILE: Mapping[str, Callable[[Mapping[str, Any]], Decimal]] = {
    "taobao": lambda p: Decimal(p["payment"]),
    "jd": lambda p: Decimal(p["orderPayment"]),
    "pdd": lambda p: Decimal(repr(p["pay_amount"])),  # a JSON number in yuan
    "douyin": lambda p: _fen(p["pay_amount"]),
    "wechat": lambda p: _fen(p["order_detail"]["price_info"]["order_price"]),
    "shopify": lambda p: Decimal(p["total_price"]),
    "amazon": _amazon_paid,
}

# Amazon marketplaces whose prices exclude tax (US, CA): OrderTotal adds ItemTax on top. In the
# others (DE, JP, ...) ItemPrice includes VAT and ItemTax only reports the part of it that is tax.
TAX_EXCLUSIVE_MARKETPLACES = frozenset({"ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"})


def _amazon_tax(payload: Mapping[str, Any]) -> Decimal:
    if payload.get("MarketplaceId") not in TAX_EXCLUSIVE_MARKETPLACES:
        return Decimal(0)
    return (_amazon_sum(payload, "ItemTax") + _amazon_sum(payload, "ShippingTax")
            - _amazon_sum(payload, "ShippingDiscountTax")
            - _amazon_sum(payload, "PromotionDiscountTax"))


# Tax the paid amount adds on top of goods - discount + shipping (Chinese prices include it).
TAX_IN_FILE: Mapping[str, Callable[[Mapping[str, Any]], Decimal]] = {
    "shopify": lambda p: Decimal(0) if p.get("taxes_included") else Decimal(p["total_tax"]),
    "amazon": _amazon_tax,
}


def _lines_total(channel: str, order: Order, payload: Mapping[str, Any]) -> Decimal:
    """What the order's line totals add up to, by how the channel spreads its discounts."""
    if channel in ("jd", "pdd"):  # discounts are order-level: lines are price x quantity
        return order.goods_amount
    if channel == "amazon":  # lines carry PromotionDiscount; ShippingDiscount is the order's
        return order.goods_amount - order.discount_amount + _amazon_sum(payload,
                                                                        "ShippingDiscount")
    return order.goods_amount - order.discount_amount


def _fixture_files() -> list[tuple[str, str]]:
    return [
        (channel, path.name)
        for channel in sorted(ADAPTERS)
        for path in sorted((FIXTURES / channel).glob("*.json"))
        if not path.name.startswith(SKIPPED_PREFIXES)
    ]


def _mapped(channel: str, name: str) -> list[tuple[Mapping[str, Any], Order]]:
    document = json.loads((FIXTURES / channel / name).read_text(encoding="utf-8"))
    payloads = ADAPTERS[channel].unwrap(document)
    mapper = MAPPERS[Channel(channel)]
    return [(p, mapper(p, shop=f"{channel}-shop", rates=RATES)) for p in payloads]


@pytest.mark.parametrize(("channel", "name"), _fixture_files())
def test_each_fixture_maps_to_the_status_its_file_stands_for(channel: str, name: str) -> None:
    assert name in EXPECTED[channel], f"{channel}/{name}: add it to EXPECTED"
    mapped = _mapped(channel, name)

    assert tuple(order.status for _, order in mapped) == EXPECTED[channel][name]
    for payload, order in mapped:
        where = f"{channel}/{name} {order.native_id}"
        # Ids: exact strings, the canonical id the channel prefix and the native id as sent.
        assert isinstance(order.native_id, str) and order.native_id, where
        assert order.native_id == ADAPTERS[channel].native_id(payload), where
        assert order.id == f"{ID_PREFIX[Channel(channel)]}{order.native_id}", where
        for line in order.lines:
            assert line.sku is None or (isinstance(line.sku, str) and line.sku), where
            assert line.channel_sku_id is None or isinstance(line.channel_sku_id, str), where

        # Times: Beijing wall clock whatever the channel sent, and in the order they happened.
        document = order.model_dump(mode="json")
        for key in ("created_at", "updated_at", "paid_at"):
            assert document[key] is None or document[key].endswith("+08:00"), (where, key)
        assert order.created_at <= order.updated_at, where
        if order.paid_at is not None:
            assert order.created_at <= order.paid_at <= order.updated_at, where

        # Money: exact Decimals that add up the way the file says.
        amounts = (order.goods_amount, order.shipping_amount, order.discount_amount,
                   order.paid_amount, order.paid_cny)
        assert all(type(a) is Decimal for a in amounts), where
        assert all(type(line.unit_price) is Decimal and type(line.line_total) is Decimal
                   for line in order.lines), where
        assert order.paid_amount == PAID_IN_FILE[channel](payload), where
        tax = TAX_IN_FILE[channel](payload) if channel in TAX_IN_FILE else Decimal(0)
        assert (order.goods_amount - order.discount_amount + order.shipping_amount + tax
                == order.paid_amount), where
        assert sum((line.line_total for line in order.lines), Decimal(0)) == _lines_total(
            channel, order, payload), where
        # Unpaid means no payment time, except a PDD group buy still forming: paid, not a deal.
        if order.status is S.PENDING_PAYMENT and channel != "pdd":
            assert order.paid_at is None, where


def test_every_channel_folder_covers_the_states_its_api_has() -> None:
    listed = {(channel, name) for channel, names in EXPECTED.items() for name in names}
    assert listed == set(_fixture_files())  # no stale entry, no unlisted file
    for channel, required in CHANNEL_STATES.items():
        covered = {status for statuses in EXPECTED[channel].values() for status in statuses}
        assert required <= covered, (channel, sorted(required - covered))


def test_shopify_amounts_are_the_shop_s_currency_not_the_buyer_s() -> None:
    (payload, order), = _mapped("shopify", "orders_paid.json")

    assert payload["presentment_currency"] == "CAD" and payload["currency"] == "USD"
    assert order.currency == "USD"
    assert order.paid_amount == Decimal(payload["total_price_set"]["shop_money"]["amount"])
    assert order.paid_amount != Decimal(payload["total_price_set"]["presentment_money"]["amount"])


def test_traps_survive_mapping() -> None:
    (_, taobao), = _mapped("taobao", "trade_fullinfo_shipped.json")
    assert taobao.native_id == "4105632987120458817"  # 19 digits, beyond a double
    assert [line.sku for line in taobao.lines] == ["SC-TREK-GRY-41", "SC-SOCK-3P"]

    (_, shopify), = _mapped("shopify", "orders_create_pending.json")
    assert shopify.created_at.isoformat() == "2026-02-07T10:47:12+08:00"  # 21:47:12-05:00
    assert [line.sku for line in shopify.lines] == ["TEA-LJ-250G", None]  # sku ""

    (_, digital), = _mapped("shopify", "orders_updated_refunded.json")
    assert digital.recipient is None  # shipping_address null

    (_, jd), = _mapped("jd", "order_shipped.json")
    assert jd.lines[1].sku is None  # outerSkuId ""
    (_, cod), = _mapped("jd", "order_cod_unpaid.json")
    assert cod.paid_at is None  # "0001-01-01 00:00:00"

    (_, amazon), = _mapped("amazon", "order_unshipped.json")
    assert amazon.lines[0].unit_price == Decimal("29.99")  # ItemPrice 89.97 for 3

    (_, pdd), = _mapped("pdd", "order_info_awaiting_shipment.json")
    assert pdd.recipient is not None and pdd.recipient.phone is not None
    assert pdd.recipient.phone.startswith("$")  # ciphertext kept, not the *_mask

    (_, douyin), = _mapped("douyin", "order_detail_preparing.json")
    assert douyin.recipient is not None and douyin.recipient.phone is not None
    assert douyin.recipient.phone.startswith("$$")

    (_, wechat), = _mapped("wechat", "order_refunded.json")
    assert wechat.paid_amount == Decimal("196.00")  # 19600 fen
