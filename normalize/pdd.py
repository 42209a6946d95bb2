"""Pinduoduo order (pdd.order.information.get, pdd.order.list.get) -> canonical Order."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from normalize.fields import (
    as_int,
    as_list,
    as_mapping,
    as_text,
    beijing_time,
    build,
    child,
    id_text,
    json_number,
    optional_beijing_time,
    optional_text,
    required,
)
from normalize.rates import CNY, RateTable
from normalize.regions import full_city, full_province
from schemas.errors import InvalidInput
from schemas.order import Channel, Order, OrderLine, OrderStatus, Recipient, canonical_id

S = OrderStatus
ORDER_SN = re.compile(r"[0-9]{6}-[0-9]{1,20}")
"""`YYMMDD-` and digits, e.g. 251215-481803633911509; ASCII digits only."""

# `order_status` is the shipping state only (发货状态): the order APIs have no unpaid state.
ORDER_STATUS: Mapping[int, OrderStatus] = {1: S.PAID, 2: S.SHIPPED, 3: S.DELIVERED}
# `refund_status`: 1 none (or after-sale closed), 2 after-sale in progress, 3 refunding, 4 refunded.
# 2 and 3 keep the shipping status and add a flag: the request may be a return, an exchange or a
# repair, may still be refused, and the state machine has no "refund requested" before shipment;
# refund_status 4 follows once the money is back.
REFUND_FLAGS: Mapping[int, str] = {2: "after_sale", 3: "refunding"}
REFUND_STATUSES = frozenset({1, 2, 3, 4})
# `confirm_status` (成交状态): 0 not yet a deal -- a group buy still forming, paid but not to be
# shipped, since a failed group is refunded -- 1 deal, 2 cancelled.
CONFIRM_STATUSES = frozenset({0, 1, 2})
CHINA = ("中国", "中国大陆")


def map_order(payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order:
    """The canonical Order for one PDD order; any unusable field raises InvalidInput."""
    order = as_mapping(payload, "")
    native_id = order_sn(required(order, "order_sn"), "order_sn")
    shipping = _code(order, "order_status", frozenset(ORDER_STATUS), default=None)
    refund = _code(order, "refund_status", REFUND_STATUSES, default=1)
    confirm = _code(order, "confirm_status", CONFIRM_STATUSES, default=1)
    created_at = beijing_time(required(order, "created_time"), "created_time")
    paid_at = _paid_at(order)
    paid_amount = json_number(required(order, "pay_amount"), "pay_amount")
    lines = _lines(as_list(required(order, "item_list"), "item_list"))
    return build(
        Order,
        id=canonical_id(Channel.PDD, native_id),
        channel=Channel.PDD,
        shop=shop,
        native_id=native_id,
        native_status=f"order_status={shipping}/refund_status={refund}/confirm_status={confirm}",
        status=_status(shipping, refund, confirm),
        created_at=created_at,
        paid_at=paid_at,
        updated_at=optional_beijing_time(order.get("updated_at"), "updated_at") or created_at,
        currency=CNY,
        goods_amount=_goods_amount(order, lines),
        shipping_amount=_optional_yuan(order, "postage"),
        discount_amount=_optional_yuan(order, "discount_amount"),
        paid_amount=paid_amount,
        paid_cny=rates.to_cny(paid_amount, CNY, on=(paid_at or created_at).date()),
        lines=lines,
        recipient=_recipient(order),
        buyer_note=optional_text(order.get("buyer_memo"), "buyer_memo"),
        flags=_flags(order, refund),
    )


def order_sn(value: Any, path: str) -> str:
    """A PDD order number, which is a string with a dash (never a number)."""
    text = as_text(value, path)
    if not ORDER_SN.fullmatch(text):
        raise InvalidInput(f"expected an order_sn like 251215-481803633911509, got {text!r}", path)
    return text


def _code(order: Mapping[str, Any], key: str, known: frozenset[int], default: int | None) -> int:
    value = order.get(key)
    if value is None and default is not None:
        return default
    code = as_int(required(order, key), key)
    if code not in known:
        raise InvalidInput(f"unknown value {code!r}", path=key)
    return code


def _status(shipping: int, refund: int, confirm: int) -> OrderStatus:
    if confirm == 2:
        return S.CANCELLED
    if refund == 4:
        return S.REFUNDED
    if confirm == 0:
        return S.PENDING_PAYMENT
    return ORDER_STATUS[shipping]


def _paid_at(order: Mapping[str, Any]) -> datetime | None:
    # confirm_time (成交时间) stands in for a missing pay_time: PDD confirms only paid orders.
    paid = optional_beijing_time(order.get("pay_time"), "pay_time")
    return paid or optional_beijing_time(order.get("confirm_time"), "confirm_time")


def _lines(items: Sequence[Any]) -> tuple[OrderLine, ...]:
    if not items:
        raise InvalidInput("an order needs at least one item", path="item_list")
    return tuple(_line(item, child("item_list", i)) for i, item in enumerate(items))


def _line(value: Any, path: str) -> OrderLine:
    item = as_mapping(value, path)
    quantity = as_int(required(item, "goods_count", path), child(path, "goods_count"))
    if quantity <= 0:
        raise InvalidInput(f"must be positive, got {quantity}", path=child(path, "goods_count"))
    price = json_number(required(item, "goods_price", path), child(path, "goods_price"))
    sku_id = item.get("sku_id")
    return build(
        OrderLine,
        path,
        sku=_sku(item, path),
        channel_sku_id=None if sku_id in (None, "") else id_text(sku_id, child(path, "sku_id")),
        title=optional_text(item.get("goods_name"), child(path, "goods_name")) or "",
        quantity=quantity,
        unit_price=price,
        # PDD discounts are order-level only (discount_amount): a line is its price times count.
        line_total=price * quantity,
    )


def _sku(item: Mapping[str, Any], path: str) -> str | None:
    # outer_id is the merchant code of the SKU; outer_goods_id that of the whole product.
    sku = optional_text(item.get("outer_id"), child(path, "outer_id"))
    return sku or optional_text(item.get("outer_goods_id"), child(path, "outer_goods_id"))


def _goods_amount(order: Mapping[str, Any], lines: Sequence[OrderLine]) -> Decimal:
    if order.get("goods_amount") is not None:
        return json_number(order["goods_amount"], "goods_amount")
    return sum((line.line_total for line in lines), Decimal(0))


def _optional_yuan(order: Mapping[str, Any], key: str) -> Decimal:
    value = order.get(key)
    return Decimal(0) if value is None else json_number(value, key)


def _recipient(order: Mapping[str, Any]) -> Recipient:
    def text(key: str) -> str | None:
        return optional_text(order.get(key), key)

    def first(*keys: str) -> str | None:
        # Ciphertext first, the *_mask display value when the ciphertext is empty (PDD empties
        # it once an order is no longer awaiting shipment); never anything reconstructed.
        return next((value for value in map(text, keys) if value), None)

    country = text("country")
    return build(
        Recipient,
        name=first("receiver_name", "receiver_name_mask"),
        phone=first("receiver_phone", "receiver_phone_mask"),
        country="CN" if country is None or country in CHINA else None,
        province=full_province(text("province")),
        city=full_city(text("city")),
        district=text("town"),
        # receiver_address is the street part only; `address` repeats province, city and town.
        address=first("receiver_address", "address", "receiver_address_mask", "address_mask"),
        postal_code=None,
    )


def _flags(order: Mapping[str, Any], refund: int) -> tuple[str, ...]:
    flags: list[str] = []
    # is_pre_sale: 1 presale goods; trade_type: 1 deposit (定金) order.
    if _is(order.get("is_pre_sale"), 1) or _is(order.get("trade_type"), 1):
        flags.append("presale")
    if refund in REFUND_FLAGS:
        flags.append(REFUND_FLAGS[refund])
    return tuple(flags)


def _is(value: Any, code: int) -> bool:
    return type(value) is int and value == code
