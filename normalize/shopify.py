"""Shopify REST Order resource (orders/create, orders/updated webhooks) -> canonical Order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from normalize.fields import (
    amount_at,
    as_decimal,
    as_int,
    as_list,
    as_mapping,
    as_text,
    build,
    child,
    id_text,
    iso_time,
    optional_text,
    required,
)
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Channel, Order, OrderLine, OrderStatus, Recipient, canonical_id

S = OrderStatus

# `financial_status` -> status before fulfilment is considered.
# "authorized" counts as paid: the buyer's funds are held and Shopify expects the merchant to ship,
# capturing at fulfilment (manual-capture shops); holding these as unpaid would never ship them.
# "expired" (an authorization that lapsed uncaptured) needs the buyer to pay again.
FINANCIAL_STATUS: Mapping[str, OrderStatus] = {
    "pending": S.PENDING_PAYMENT,
    "authorized": S.PAID,
    "partially_paid": S.PAID,
    "paid": S.PAID,
    "partially_refunded": S.PAID,
    "refunded": S.REFUNDED,
    "voided": S.CANCELLED,
    "expired": S.PENDING_PAYMENT,
}
PAID_FINANCIAL = frozenset(
    {"authorized", "partially_paid", "paid", "partially_refunded", "refunded"}
)
COD_GATEWAYS = frozenset({"Cash on Delivery (COD)", "cash_on_delivery"})


def map_order(payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order:
    """The canonical Order for one Shopify order; any unusable field raises InvalidInput."""
    order = as_mapping(payload, "")
    native_id = id_text(required(order, "id"), "id")
    financial = as_text(required(order, "financial_status"), "financial_status")
    fulfillment = optional_text(order.get("fulfillment_status"), "fulfillment_status")
    cancelled = order.get("cancelled_at") is not None
    created_at = iso_time(required(order, "created_at"), "created_at")
    paid_at = _paid_at(order, financial, created_at)
    currency = as_text(required(order, "currency"), "currency")
    paid_amount = as_decimal(required(order, "total_price"), "total_price")
    rate_day = (paid_at or created_at).astimezone(SHANGHAI).date()
    lines = _lines(as_list(required(order, "line_items"), "line_items"))
    recipient = _recipient(order.get("shipping_address"))
    return build(
        Order,
        id=canonical_id(Channel.SHOPIFY, native_id),
        channel=Channel.SHOPIFY,
        shop=shop,
        native_id=native_id,
        native_status=_native_status(financial, fulfillment, cancelled),
        status=_status(financial, fulfillment, cancelled),
        created_at=created_at,
        paid_at=paid_at,
        updated_at=_updated_at(order, created_at),
        currency=currency,
        goods_amount=_goods_amount(order, lines),
        shipping_amount=_shipping_amount(order),
        discount_amount=_optional_amount(order, "total_discounts"),
        paid_amount=paid_amount,
        paid_cny=rates.to_cny(paid_amount, currency, on=rate_day),
        lines=lines,
        recipient=recipient,
        buyer_note=optional_text(order.get("note"), "note"),
        flags=_flags(order, recipient),
    )


def _status(financial: str, fulfillment: str | None, cancelled: bool) -> OrderStatus:
    if cancelled:
        return S.CANCELLED
    if financial not in FINANCIAL_STATUS:
        raise InvalidInput(f"unknown value {financial!r}", path="financial_status")
    status = FINANCIAL_STATUS[financial]
    if status in (S.REFUNDED, S.CANCELLED):
        return status
    # Shipped goods are shipped whatever the payment says (cash on delivery is paid later);
    # "partial" and "restocked" leave the payment-based status.
    return S.SHIPPED if fulfillment == "fulfilled" else status


def _native_status(financial: str, fulfillment: str | None, cancelled: bool) -> str:
    native = f"{financial}/{fulfillment or 'unfulfilled'}"
    return f"{native}/cancelled" if cancelled else native


def _paid_at(order: Mapping[str, Any], financial: str, created_at: datetime) -> datetime | None:
    if financial not in PAID_FINANCIAL:
        return None
    processed = order.get("processed_at")
    # processed_at is when payment was processed; an order created without it was paid on creation.
    return created_at if processed is None else iso_time(processed, "processed_at")


def _updated_at(order: Mapping[str, Any], created_at: datetime) -> datetime:
    updated = order.get("updated_at")
    return created_at if updated is None else iso_time(updated, "updated_at")


def _lines(items: Sequence[Any]) -> tuple[OrderLine, ...]:
    if not items:
        raise InvalidInput("an order needs at least one line item", path="line_items")
    return tuple(_line(item, child("line_items", i)) for i, item in enumerate(items))


def _line(value: Any, path: str) -> OrderLine:
    item = as_mapping(value, path)
    quantity = as_int(required(item, "quantity", path), child(path, "quantity"))
    if quantity <= 0:
        raise InvalidInput(f"must be positive, got {quantity}", path=child(path, "quantity"))
    price = as_decimal(required(item, "price", path), child(path, "price"))
    variant = item.get("variant_id")
    return build(
        OrderLine,
        path,
        sku=optional_text(item.get("sku"), child(path, "sku")),
        channel_sku_id=None if variant is None else id_text(variant, child(path, "variant_id")),
        title=optional_text(item.get("title"), child(path, "title")) or "",
        quantity=quantity,
        unit_price=price,
        line_total=price * quantity - _allocated_discount(item, path),
    )


def _allocated_discount(item: Mapping[str, Any], path: str) -> Decimal:
    path = child(path, "discount_allocations")
    allocations = as_list(item.get("discount_allocations") or [], path)
    amounts = (amount_at(a, child(path, i), "amount") for i, a in enumerate(allocations))
    return sum(amounts, Decimal(0))


def _goods_amount(order: Mapping[str, Any], lines: Sequence[OrderLine]) -> Decimal:
    # Goods before discounts, like the other channels (PDD goods_amount, Taobao total_fee), so that
    # goods - discount + shipping (+ tax not included in prices) = paid. Shopify's subtotal_price
    # is already net of discounts and would count them twice.
    if order.get("total_line_items_price") is not None:
        return as_decimal(order["total_line_items_price"], "total_line_items_price")
    return sum((line.unit_price * line.quantity for line in lines), Decimal(0))


def _shipping_amount(order: Mapping[str, Any]) -> Decimal:
    price_set = order.get("total_shipping_price_set")
    if price_set is not None:
        path = "total_shipping_price_set"
        money = required(as_mapping(price_set, path), "shop_money", path)
        return amount_at(money, child(path, "shop_money"), "amount")
    lines = as_list(order.get("shipping_lines") or [], "shipping_lines")
    prices = (amount_at(line, child("shipping_lines", i), "price") for i, line in enumerate(lines))
    return sum(prices, Decimal(0))


def _optional_amount(order: Mapping[str, Any], key: str) -> Decimal:
    value = order.get(key)
    return Decimal(0) if value is None else as_decimal(value, key)


def _recipient(value: Any) -> Recipient | None:
    if value is None:
        return None
    address = as_mapping(value, "shipping_address")

    def text(key: str) -> str | None:
        return optional_text(address.get(key), child("shipping_address", key))

    street = " ".join(part for part in (text("address1"), text("address2")) if part)
    return build(
        Recipient,
        "shipping_address",
        name=text("name"),
        phone=text("phone"),
        country=text("country_code"),
        province=text("province"),
        city=text("city"),
        district=None,
        address=street.strip() or None,
        postal_code=text("zip"),
    )


def _flags(order: Mapping[str, Any], recipient: Recipient | None) -> tuple[str, ...]:
    flags: list[str] = []
    if order.get("test") is True:
        flags.append("test")
    if _is_cash_on_delivery(order):
        flags.append("cod")
    if recipient is not None and recipient.country and recipient.country != "CN":
        flags.append("cross_border")
    return tuple(flags)


def _is_cash_on_delivery(order: Mapping[str, Any]) -> bool:
    names = order.get("payment_gateway_names")
    listed = names if isinstance(names, list) else []
    gateways = {name for name in listed if isinstance(name, str)}
    return bool(gateways & COD_GATEWAYS) or order.get("gateway") == "cash_on_delivery"
