"""WeChat Channels shop order (/channels/ec/order/get `order`) -> canonical Order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
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
from normalize.rates import CNY, RateTable
from normalize.regions import full_city, full_province
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Channel, Order, OrderLine, OrderStatus, Recipient, canonical_id

S = OrderStatus
DETAIL = "order_detail"
PRICE = "order_detail.price_info"
ADDRESS = "order_detail.delivery_info.address_info"

# `status` codes of the order. 21 (some parcels sent) is "shipped": the hub cannot ship part of an
# order, and treating it as paid would allocate the parcel that is already on its way a second
# time. 200 is what WeChat sets once every item went through after-sale (refund) and the order
# was closed: the buyer had paid and got the money back, so "refunded", not a plain cancel.
# 190 (cancelled by the merchant) and 250 (unpaid and cancelled or timed out) are cancellations.
STATUS: Mapping[int, OrderStatus] = {
    10: S.PENDING_PAYMENT,
    20: S.PAID,
    21: S.SHIPPED,
    30: S.SHIPPED,
    100: S.COMPLETED,
    190: S.CANCELLED,
    200: S.REFUNDED,
    250: S.CANCELLED,
}
UNPAID = 10
PAID_STATUSES = frozenset({20, 21, 30, 100, 200})


def map_order(payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order:
    """The canonical Order for one WeChat Channels order; any unusable field raises InvalidInput."""
    order = as_mapping(payload, "")
    native_id = id_text(required(order, "order_id"), "order_id")
    code = _status_code(required(order, "status"))
    created_at = unix_time(required(order, "create_time"), "create_time")
    detail = as_mapping(required(order, DETAIL), DETAIL)
    paid_at = _paid_at(detail, code, created_at)
    lines = _lines(as_list(required(detail, "product_infos", DETAIL), f"{DETAIL}.product_infos"))
    price = as_mapping(required(detail, "price_info", DETAIL), PRICE)
    paid_amount = fen(required(price, "order_price", PRICE), f"{PRICE}.order_price")
    rate_day = (paid_at or created_at).astimezone(SHANGHAI).date()
    return build(
        Order,
        id=canonical_id(Channel.WECHAT, native_id),
        channel=Channel.WECHAT,
        shop=shop,
        native_id=native_id,
        native_status=str(code),
        status=STATUS[code],
        created_at=created_at,
        paid_at=paid_at,
        updated_at=optional_unix_time(order.get("update_time"), "update_time") or created_at,
        currency=CNY,
        goods_amount=_goods_amount(price, lines),
        shipping_amount=_optional_fen(price, "freight"),
        discount_amount=_optional_fen(price, "discounted_price"),
        paid_amount=paid_amount,
        paid_cny=rates.to_cny(paid_amount, CNY, on=rate_day),
        lines=lines,
        recipient=_recipient(detail),
        buyer_note=_buyer_note(detail),
        buyer_openid=_openid(order),
        flags=(),
    )


def _openid(order: Mapping[str, Any]) -> str | None:
    """The buyer's openid for this shop's app: where subscribe messages go."""
    value = order.get("openid")
    return value.strip() or None if isinstance(value, str) else None


def _status_code(value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    code = as_int(value, "status")
    if code not in STATUS:
        raise InvalidInput(f"unknown order status {code}", path="status")
    return code


def _paid_at(detail: Mapping[str, Any], code: int, created_at: datetime) -> datetime | None:
    if code == UNPAID:
        return None
    path = f"{DETAIL}.pay_info"
    pay_time = _optional_mapping(detail, "pay_info", path).get("pay_time")
    paid_at = optional_unix_time(pay_time, child(path, "pay_time"))
    # A paid status without pay_time should not occur; like Shopify's missing processed_at it is
    # read as paid on creation rather than calling a paid order unpaid.
    if paid_at is None and code in PAID_STATUSES:
        return created_at
    return paid_at


def _lines(items: Sequence[Any]) -> tuple[OrderLine, ...]:
    path = f"{DETAIL}.product_infos"
    if not items:
        raise InvalidInput("an order needs at least one product", path=path)
    return tuple(_line(item, child(path, i)) for i, item in enumerate(items))


def _line(value: Any, path: str) -> OrderLine:
    item = as_mapping(value, path)
    quantity = as_int(required(item, "sku_cnt", path), child(path, "sku_cnt"))
    if not 0 < quantity <= 1_000_000:
        raise InvalidInput(f"not a plausible quantity: {quantity}", path=child(path, "sku_cnt"))
    unit_price = fen(required(item, "sale_price", path), child(path, "sale_price"))
    real_price = item.get("real_price")
    sku_id = item.get("sku_id")

    def text(key: str) -> str | None:
        return optional_text(item.get(key), child(path, key))

    return build(
        OrderLine,
        path,
        # out_sku_id is the merchant's own SKU id; shops that never set it fill sku_code instead.
        sku=text("out_sku_id") or text("sku_code"),
        channel_sku_id=None if sku_id is None else id_text(sku_id, child(path, "sku_id")),
        title=text("title") or "",
        quantity=quantity,
        unit_price=unit_price,
        # real_price is what the buyer paid for the whole line, after discounts.
        line_total=(
            unit_price * quantity
            if real_price is None
            else fen(real_price, child(path, "real_price"))
        ),
    )


def _goods_amount(price: Mapping[str, Any], lines: Sequence[OrderLine]) -> Decimal:
    if price.get("product_price") is not None:
        return fen(price["product_price"], f"{PRICE}.product_price")
    return sum((line.unit_price * line.quantity for line in lines), Decimal(0))


def _optional_fen(price: Mapping[str, Any], key: str) -> Decimal:
    value = price.get(key)
    return Decimal(0) if value is None else fen(value, f"{PRICE}.{key}")


def _recipient(detail: Mapping[str, Any]) -> Recipient | None:
    delivery = _optional_mapping(detail, "delivery_info", f"{DETAIL}.delivery_info")
    if delivery.get("address_info") is None:
        return None
    address = as_mapping(delivery["address_info"], ADDRESS)

    def text(key: str) -> str | None:
        return optional_text(address.get(key), child(ADDRESS, key))

    # Name, phone and street come masked (陈**, 138****5678) or as a virtual number: kept as sent.
    return build(
        Recipient,
        ADDRESS,
        name=text("user_name"),
        phone=text("tel_number"),
        country="CN",
        province=full_province(text("province_name")),
        city=full_city(text("city_name")),
        district=text("county_name"),
        address=text("detail_info"),
        postal_code=text("postal_code"),
    )


def _buyer_note(detail: Mapping[str, Any]) -> str | None:
    ext = _optional_mapping(detail, "ext_info", f"{DETAIL}.ext_info")
    return optional_text(ext.get("customer_notes"), f"{DETAIL}.ext_info.customer_notes")


def _optional_mapping(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return {} if value is None else as_mapping(value, path)
