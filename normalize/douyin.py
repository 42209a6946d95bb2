"""Douyin shop (抖店) order (order.orderDetail, order.searchList) -> canonical Order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from normalize.fields import (
    as_int,
    as_list,
    as_mapping,
    build,
    child,
    fen,
    id_text,
    optional_text,
    optional_unix_time,
    required,
    unix_time,
)
from normalize.rates import CENT, CNY, RateTable
from normalize.regions import full_city, full_province
from schemas.errors import InvalidInput
from schemas.order import Channel, Order, OrderLine, OrderStatus, Recipient, canonical_id

S = OrderStatus

# 105 (paid) comes before 2 (备货中, preparing); Douyin holds risk-reviewed orders at 105.
# 101 (part shipped) is shipped: part of the goods has left, so the order must not be allocated
# again, and the state machine has no partial shipment.
ORDER_STATUS: Mapping[int, OrderStatus] = {
    1: S.PENDING_PAYMENT,
    105: S.PAID,
    2: S.PAID,
    101: S.SHIPPED,
    3: S.SHIPPED,
    4: S.CANCELLED,
    5: S.COMPLETED,
}
# A refunded order is also order_status 4 ("closed"); main_status tells it apart: refund completed
# 21 before shipment, 22 after shipment, 39 after receipt.
REFUNDED_MAIN_STATUSES = frozenset({21, 22, 39})
# after_sale_info.after_sale_status values of a request still open: 6 applied, 7 goods returning,
# 11 returned goods shipped, 13 exchange shipped by the merchant.
OPEN_AFTER_SALE = frozenset({6, 7, 11, 13})
CASH_ON_DELIVERY = 0  # pay_type
DEPOSIT_PRESALE = 2  # trade_type
MUNICIPALITIES = frozenset({"北京市", "天津市", "上海市", "重庆市"})
CITY_PLACEHOLDERS = frozenset({"市辖区", "县"})
"""City names Douyin sends for the districts and counties of a municipality."""


def map_order(payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order:
    """The canonical Order for one Douyin shop order; any unusable field raises InvalidInput."""
    order = as_mapping(payload, "")
    native_id = id_text(required(order, "order_id"), "order_id")
    status = as_int(required(order, "order_status"), "order_status")
    if status not in ORDER_STATUS:
        raise InvalidInput(f"unknown value {status!r}", path="order_status")
    main = order.get("main_status")
    main_status = None if main is None else as_int(main, "main_status")
    created_at = unix_time(required(order, "create_time"), "create_time")
    paid_at = optional_unix_time(order.get("pay_time"), "pay_time")
    paid_amount = fen(required(order, "pay_amount"), "pay_amount")
    items = as_list(required(order, "sku_order_list"), "sku_order_list")
    lines = _lines(items)
    goods = sum((line.unit_price * line.quantity for line in lines), Decimal(0))
    shipping = _optional_fen(order, "post_amount", "")
    return build(
        Order,
        id=canonical_id(Channel.DOUYIN, native_id),
        channel=Channel.DOUYIN,
        shop=shop,
        native_id=native_id,
        native_status=_native_status(status, main_status),
        status=_status(status, main_status),
        created_at=created_at,
        paid_at=paid_at,
        updated_at=optional_unix_time(order.get("update_time"), "update_time") or created_at,
        currency=CNY,
        goods_amount=goods,
        shipping_amount=shipping,
        # Douyin spreads the discount over promotion_amount, promotion_pay_amount, red packets
        # and price changes (改价); what was knocked off is whatever the buyer did not pay.
        discount_amount=goods + shipping - paid_amount,
        paid_amount=paid_amount,
        paid_cny=rates.to_cny(paid_amount, CNY, on=(paid_at or created_at).date()),
        lines=lines,
        recipient=_recipient(order),
        buyer_note=optional_text(order.get("buyer_words"), "buyer_words"),
        flags=_flags(order, items),
    )


def _status(status: int, main_status: int | None) -> OrderStatus:
    if status == 4 and main_status in REFUNDED_MAIN_STATUSES:
        return S.REFUNDED
    return ORDER_STATUS[status]


def _native_status(status: int, main_status: int | None) -> str:
    native = f"order_status={status}"
    return native if main_status in (None, status) else f"{native}/main_status={main_status}"


def _lines(items: Sequence[Any]) -> tuple[OrderLine, ...]:
    if not items:
        raise InvalidInput("an order needs at least one SKU order", path="sku_order_list")
    return tuple(_line(item, child("sku_order_list", i)) for i, item in enumerate(items))


def _line(value: Any, path: str) -> OrderLine:
    item = as_mapping(value, path)
    quantity = as_int(required(item, "item_num", path), child(path, "item_num"))
    if quantity <= 0:
        raise InvalidInput(f"must be positive, got {quantity}", path=child(path, "item_num"))
    # A SKU order's pay_amount includes its share of the postage (its own post_amount).
    paid = fen(required(item, "pay_amount", path), child(path, "pay_amount"))
    total = paid - _optional_fen(item, "post_amount", path)
    sku_id = item.get("sku_id")
    return build(
        OrderLine,
        path,
        sku=_sku(item, path),
        channel_sku_id=None if sku_id in (None, "") else id_text(sku_id, child(path, "sku_id")),
        title=optional_text(item.get("product_name"), child(path, "product_name")) or "",
        quantity=quantity,
        unit_price=_unit_price(item, path, quantity, total),
        line_total=total,
    )


def _sku(item: Mapping[str, Any], path: str) -> str | None:
    # out_sku_id is the merchant's SKU code; `code` the merchant code of the product (商家编码).
    sku = optional_text(item.get("out_sku_id"), child(path, "out_sku_id"))
    return sku or optional_text(item.get("code"), child(path, "code"))


def _unit_price(item: Mapping[str, Any], path: str, quantity: int, total: Decimal) -> Decimal:
    # origin_amount is the unit price (商品现价); sum_amount that price times item_num.
    if item.get("origin_amount") is not None:
        return fen(item["origin_amount"], child(path, "origin_amount"))
    gross = (
        total
        if item.get("sum_amount") is None
        else fen(item["sum_amount"], child(path, "sum_amount"))
    )
    return (gross / quantity).quantize(CENT, rounding=ROUND_HALF_UP)


def _optional_fen(obj: Mapping[str, Any], key: str, path: str) -> Decimal:
    value = obj.get(key)
    return Decimal(0) if value is None else fen(value, child(path, key))


def _recipient(order: Mapping[str, Any]) -> Recipient | None:
    def text(key: str) -> str | None:
        return optional_text(order.get(key), key)

    post = _address(order, "post_addr")
    masked = _address(order, "mask_post_addr")

    def region(key: str) -> str | None:
        return _region(post, "post_addr", key) or _region(masked, "mask_post_addr", key)

    # The encrypted value ($$…$$ phone, ##…## name and address) as sent, else the masked one.
    name = text("encrypt_post_receiver") or text("mask_post_receiver")
    phone = text("encrypt_post_tel") or text("mask_post_tel")
    province = full_province(region("province"))
    city = _city(province, region("city"))
    district = region("town")
    address = (
        _detail(post, "post_addr", "encrypt_detail")
        or _detail(post, "post_addr", "detail")
        or _detail(masked, "mask_post_addr", "detail")
    )
    if not any((name, phone, province, city, district, address)):
        return None
    return build(
        Recipient,
        name=name,
        phone=phone,
        country="CN",
        province=province,
        city=city,
        district=district,
        address=address,
        postal_code=None,
    )


def _address(order: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = order.get(key)
    return {} if value is None else as_mapping(value, key)


def _region(address: Mapping[str, Any], path: str, key: str) -> str | None:
    value = address.get(key)
    if value is None:
        return None
    region = as_mapping(value, child(path, key))
    return optional_text(region.get("name"), child(child(path, key), "name"))


def _detail(address: Mapping[str, Any], path: str, key: str) -> str | None:
    return optional_text(address.get(key), child(path, key))


def _city(province: str | None, city: str | None) -> str | None:
    # A municipality's city is the municipality itself, which is what the other channels send.
    if province in MUNICIPALITIES and city in CITY_PLACEHOLDERS:
        return province
    return full_city(city)


def _flags(order: Mapping[str, Any], items: Sequence[Any]) -> tuple[str, ...]:
    skus = [item for item in items if isinstance(item, Mapping)]
    flags: list[str] = []
    if _is(order.get("trade_type"), DEPOSIT_PRESALE) or any(
        _is(item.get("pre_sale_type"), 1) or _is(item.get("pre_sale_type"), 2) for item in skus
    ):
        flags.append("presale")
    if _is(order.get("pay_type"), CASH_ON_DELIVERY):
        flags.append("cod")
    if any(_open_after_sale(item.get("after_sale_info")) for item in skus):
        flags.append("after_sale")
    return tuple(flags)


def _open_after_sale(info: Any) -> bool:
    status = info.get("after_sale_status") if isinstance(info, Mapping) else None
    return type(status) is int and status in OPEN_AFTER_SALE


def _is(value: Any, code: int) -> bool:
    return type(value) is int and value == code
