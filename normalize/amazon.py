"""Amazon SP-API Orders v0 Order, with getOrderItems' `OrderItems` attached -> canonical Order."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from normalize.fields import (
    amount_at,
    as_int,
    as_list,
    as_mapping,
    as_text,
    build,
    child,
    iso_time,
    optional_text,
    required,
)
from normalize.rates import RateTable
from normalize.regions import full_city, full_province
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Channel, Order, OrderLine, OrderStatus, Recipient, canonical_id

S = OrderStatus

# `OrderStatus` -> canonical status.
# PendingAvailability is a pre-order whose payment is not authorized yet: unpaid, like Pending.
# PartiallyShipped is "shipped": the hub cannot ship part of an order, and "paid" would allocate
# the items Amazon already saw shipped a second time. InvoiceUnconfirmed means every item has
# shipped and only the seller's invoice confirmation is outstanding (Amazon's own definition).
# Unfulfillable (Multi-Channel Fulfillment orders placed off Amazon that Amazon cannot fulfil) is
# terminal on Amazon's side and nothing will ship, so it counts as cancelled; the sale itself lives
# on the channel where it was placed.
STATUS: Mapping[str, OrderStatus] = {
    "PendingAvailability": S.PENDING_PAYMENT,
    "Pending": S.PENDING_PAYMENT,
    "Unshipped": S.PAID,
    "PartiallyShipped": S.SHIPPED,
    "Shipped": S.SHIPPED,
    "InvoiceUnconfirmed": S.SHIPPED,
    "Canceled": S.CANCELLED,
    "Unfulfillable": S.CANCELLED,
}
# Payment is authorized in these; Amazon gives no payment time, so PurchaseDate stands for it.
# Canceled has no paid_at: the order may have been cancelled before payment was authorized.
PAID = frozenset({"Unshipped", "PartiallyShipped", "Shipped", "InvoiceUnconfirmed"})
# Before payment is authorized getOrderItems leaves out prices, taxes, shipping and promotions,
# and getOrder leaves out OrderTotal; from Unshipped on they are always there.
PRICED = PAID
# MarketplaceId -> (country, currency), from Amazon's marketplace ID table: the currency of an
# unpriced order and the destination country when ShippingAddress is withheld.
# fmt: off
MARKETPLACES: Mapping[str, str] = {
    "ATVPDKIKX0DER": "US USD", "A2EUQ1WTGCTBG2": "CA CAD", "A1AM78C64UM0Y8": "MX MXN",
    "A2Q3Y263D00KWC": "BR BRL", "A1F83G8C2ARO7P": "GB GBP", "A1PA6795UKMFR9": "DE EUR",
    "A13V1IB3VIYZZH": "FR EUR", "APJ6JRA9NG5V4": "IT EUR", "A1RKKUPIHCS9HS": "ES EUR",
    "A1805IZSGTT6HS": "NL EUR", "AMEN7PMS3EDWL": "BE EUR", "A28R8C7NBKEWEA": "IE EUR",
    "A2NODRKZP88ZB9": "SE SEK", "A1C3SOZRARQ6R3": "PL PLN", "A33AVAJ2PDY3EV": "TR TRY",
    "A2VIGQ35RCS4UG": "AE AED", "A17E79C6D8DWNP": "SA SAR", "ARBP9OOSHTCHU": "EG EGP",
    "AE08WJ6YKNBMC": "ZA ZAR", "A21TJRUUN4KGV": "IN INR", "A1VC38T7YXB528": "JP JPY",
    "A39IBJ37TRP1C6": "AU AUD", "A19VAU5U5O7RUS": "SG SGD",
}
# fmt: on
ORDER_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")
CURRENCY = re.compile(r"[A-Z]{3}")
ITEMS = "OrderItems"


def map_order(payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order:
    """The canonical Order for one Amazon order; any unusable field raises InvalidInput."""
    order = as_mapping(payload, "")
    native_id = order_id(required(order, "AmazonOrderId"), "AmazonOrderId")
    native_status = as_text(required(order, "OrderStatus"), "OrderStatus")
    if native_status not in STATUS:
        raise InvalidInput(f"unknown value {native_status!r}", path="OrderStatus")
    created_at = iso_time(required(order, "PurchaseDate"), "PurchaseDate")
    updated = order.get("LastUpdateDate")
    items = _items(order, priced=native_status in PRICED)
    goods, shipping = _total(items, "ItemPrice"), _total(items, "ShippingPrice")
    discount = _total(items, "PromotionDiscount") + _total(items, "ShippingDiscount")
    paid_amount = _paid_amount(order, goods - discount + shipping)
    currency = _currency(order, items)
    recipient = _recipient(order)
    return build(
        Order,
        id=canonical_id(Channel.AMAZON, native_id),
        channel=Channel.AMAZON,
        shop=shop,
        native_id=native_id,
        native_status=native_status,
        status=STATUS[native_status],
        created_at=created_at,
        paid_at=created_at if native_status in PAID else None,
        updated_at=created_at if updated is None else iso_time(updated, "LastUpdateDate"),
        currency=currency,
        goods_amount=goods,
        shipping_amount=shipping,
        # ShippingDiscount counts too, so that goods - discount + shipping (+ tax) = paid.
        discount_amount=discount,
        paid_amount=paid_amount,
        paid_cny=rates.to_cny(paid_amount, currency, on=created_at.astimezone(SHANGHAI).date()),
        lines=tuple(_line(item, child(ITEMS, i), cancelled=native_status == "Canceled")
                    for i, item in enumerate(items)),
        recipient=recipient,
        buyer_note=None,
        flags=_flags(order, native_status, recipient, items),
    )


def order_id(value: Any, path: str) -> str:
    """An AmazonOrderId (3-7-7 digits such as 902-3159896-1390916) as sent."""
    if not isinstance(value, str) or not ORDER_ID.fullmatch(value):
        raise InvalidInput(
            f"expected an Amazon order id like 902-3159896-1390916, got {value!r}", path=path
        )
    return value


def _items(order: Mapping[str, Any], *, priced: bool) -> Sequence[Mapping[str, Any]]:
    if order.get(ITEMS) is None:
        raise InvalidInput(
            "the order carries no lines: getOrder/getOrders return none, so the "
            "caller must attach getOrderItems' payload.OrderItems to the order as "
            "'OrderItems'",
            path=ITEMS,
        )
    items = as_list(order[ITEMS], ITEMS)
    if not items:
        raise InvalidInput("an order needs at least one order item", path=ITEMS)
    mappings = [as_mapping(item, child(ITEMS, i)) for i, item in enumerate(items)]
    for i, item in enumerate(mappings):
        if priced and item.get("ItemPrice") is None:
            raise InvalidInput(
                "required once payment is authorized", path=child(child(ITEMS, i), "ItemPrice")
            )
    return mappings


def _money(item: Mapping[str, Any], key: str, path: str) -> Decimal:
    value = item.get(key)
    return Decimal(0) if value is None else amount_at(value, child(path, key), "Amount")


def _total(items: Sequence[Mapping[str, Any]], key: str) -> Decimal:
    amounts = (_money(item, key, child(ITEMS, i)) for i, item in enumerate(items))
    return sum(amounts, Decimal(0))


def _paid_amount(order: Mapping[str, Any], from_items: Decimal) -> Decimal:
    if order.get("OrderTotal") is None:
        # Unpriced (Pending) orders have no OrderTotal; their items carry no prices either.
        return from_items
    return amount_at(order["OrderTotal"], "OrderTotal", "Amount")


def _currency(order: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> str:
    if order.get("OrderTotal") is not None:
        total = as_mapping(order["OrderTotal"], "OrderTotal")
        code = required(total, "CurrencyCode", "OrderTotal")
        return _currency_code(code, "OrderTotal.CurrencyCode")
    for i, item in enumerate(items):
        price = item.get("ItemPrice")
        if isinstance(price, Mapping) and price.get("CurrencyCode") is not None:
            path = f"{child(ITEMS, i)}.ItemPrice.CurrencyCode"
            return _currency_code(price["CurrencyCode"], path)
    marketplace = _marketplace(order)
    if marketplace is None:
        raise InvalidInput(
            "no OrderTotal, item price or known MarketplaceId tells the currency", path="OrderTotal"
        )
    return marketplace[1]


def _currency_code(value: Any, path: str) -> str:
    if not isinstance(value, str) or not CURRENCY.fullmatch(value):
        raise InvalidInput(f"expected an ISO 4217 code, got {value!r}", path=path)
    return value


def _marketplace(order: Mapping[str, Any]) -> tuple[str, str] | None:
    marketplace = MARKETPLACES.get(optional_text(order.get("MarketplaceId"), "MarketplaceId") or "")
    return None if marketplace is None else (marketplace[:2], marketplace[3:])


def _line(item: Mapping[str, Any], path: str, *, cancelled: bool) -> OrderLine:
    quantity = as_int(required(item, "QuantityOrdered", path), child(path, "QuantityOrdered"))
    # Amazon zeroes QuantityOrdered once an order is Canceled: the line stays, with 0 units.
    lowest = 0 if cancelled else 1
    if not lowest <= quantity <= 1_000_000:
        raise InvalidInput(
            f"not a plausible quantity: {quantity}", path=child(path, "QuantityOrdered")
        )
    price = _money(item, "ItemPrice", path)

    def text(key: str) -> str | None:
        return optional_text(item.get(key), child(path, key))

    return build(
        OrderLine,
        path,
        sku=text("SellerSKU"),
        # The ASIN identifies the product across orders (like a variant id); OrderItemId only
        # identifies this line of this order.
        channel_sku_id=text("ASIN"),
        title=text("Title") or "",
        quantity=quantity,
        unit_price=_unit_price(price, quantity),
        line_total=price - _money(item, "PromotionDiscount", path),
    )


def _unit_price(item_price: Decimal, quantity: int) -> Decimal:
    """ItemPrice is the unit price times the quantity: divide it back, exactly."""
    if quantity == 0:  # a cancelled line: Amazon sends no price for it
        return item_price
    unit = item_price / quantity
    if unit * quantity == item_price:
        return unit
    # Not a multiple of the quantity (Amazon documents it always is): round to the amount's own
    # precision; line totals and order amounts stay exact.
    exponent = item_price.as_tuple().exponent
    places = min(max(-exponent, 0), 8) if isinstance(exponent, int) else 2
    return unit.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _recipient(order: Mapping[str, Any]) -> Recipient | None:
    # Absent before payment, and without a Restricted Data Token (it is PII).
    if order.get("ShippingAddress") is None:
        return None
    path = "ShippingAddress"
    address = as_mapping(order[path], path)

    def text(key: str) -> str | None:
        return optional_text(address.get(key), child(path, key))

    chinese = text("CountryCode") == "CN"
    lines = (text("AddressLine1"), text("AddressLine2"), text("AddressLine3"))
    return build(
        Recipient,
        path,
        name=text("Name"),
        phone=text("Phone"),  # Amazon withholds it for FBA orders
        country=text("CountryCode"),
        province=full_province(text("StateOrRegion")) if chinese else text("StateOrRegion"),
        city=full_city(text("City")) if chinese else text("City"),
        district=text("District") or text("County"),
        address=" ".join(line for line in lines if line) or None,
        postal_code=text("PostalCode"),
    )


def _flags(
    order: Mapping[str, Any],
    native_status: str,
    recipient: Recipient | None,
    items: Sequence[Mapping[str, Any]],
) -> tuple[str, ...]:
    flags: list[str] = []
    if native_status == "PendingAvailability" or order.get("OrderType") == "Preorder":
        flags.append("presale")
    if order.get("PaymentMethod") == "COD":
        flags.append("cod")
    if order.get("FulfillmentChannel") == "AFN":
        flags.append("fba")  # Amazon ships it from its own stock: nothing for our warehouses
    marketplace = _marketplace(order)
    country = recipient.country if recipient else None
    if country is None and marketplace is not None:
        country = marketplace[0]
    if country and country != "CN":
        flags.append("cross_border")
    if any(item.get("ItemPrice") is None for item in items):
        flags.append("amounts_pending")  # amounts read 0 until Amazon prices the items
    return tuple(flags)
