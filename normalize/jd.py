"""JD POP orders (jingdong.pop.order.get / jingdong.pop.order.search) -> canonical Order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from normalize.fields import (
    as_decimal,
    as_int,
    as_list,
    as_mapping,
    as_text,
    build,
    child,
    id_text,
    optional_beijing_time,
    optional_text,
    required,
)
from normalize.rates import CNY, RateTable
from normalize.regions import full_city, full_province
from schemas.errors import InvalidInput
from schemas.order import Channel, Order, OrderLine, OrderStatus, Recipient, canonical_id

S = OrderStatus

# `orderState` -> canonical status. order.search returns only orders ready for production, so
# an online-paid order is never seen unpaid; cash-on-delivery ones are shippable before payment.
STATUS: Mapping[str, OrderStatus] = {
    "WAIT_SELLER_STOCK_OUT": S.PAID,
    "WAIT_SELLER_DELIVERY": S.PAID,  # JD Worldwide: awaiting domestic dispatch
    "WAIT_SEND_CODE": S.PAID,  # service/virtual (LOC) order awaiting its code
    "WAIT_GOODS_RECEIVE_CONFIRM": S.SHIPPED,
    "FINISHED_L": S.COMPLETED,
    # JD cancels before delivery and refunds a paid order itself; after-sales refunds leave the
    # order FINISHED_L. So a cancelled order is cancelled, paid or not (paid_at says which).
    "TRADE_CANCELED": S.CANCELLED,
    # Locked (usually a buyer's cancellation request under review) or paused by JD: the seller
    # must not ship. Allocation ships every `paid` order, so these are held until JD releases
    # them (back to WAIT_SELLER_STOCK_OUT -> paid) or cancels them.
    "LOCKED": S.REVIEW_HOLD,
    "PAUSE": S.REVIEW_HOLD,
    "POP_ORDER_PAUSE": S.REVIEW_HOLD,
}
HOLD_FLAGS: Mapping[str, str] = {"LOCKED": "locked", "PAUSE": "paused", "POP_ORDER_PAUSE": "paused"}
COD_PAY_TYPE = "1"  # payType "1-货到付款"
MAX_QUANTITY_DIGITS = 9


def map_order(payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order:
    """The canonical Order for one JD POP order; any unusable field raises InvalidInput."""
    order = as_mapping(payload, "")
    native_id = id_text(required(order, "orderId"), "orderId")
    native_status = as_text(required(order, "orderState"), "orderState")
    if native_status not in STATUS:
        raise InvalidInput(f"unknown value {native_status!r}", path="orderState")
    created_at = _required_time(order, "orderStartTime")
    # JD sends "0001-01-01 00:00:00" (or a 1970 date) for "not paid yet".
    paid_at = optional_beijing_time(order.get("paymentConfirmTime"), "paymentConfirmTime")
    paid_amount = as_decimal(required(order, "orderPayment"), "orderPayment")
    lines = _lines(as_list(required(order, "itemInfoList"), "itemInfoList"))
    return build(
        Order,
        id=canonical_id(Channel.JD, native_id),
        channel=Channel.JD,
        shop=shop,
        native_id=native_id,
        native_status=native_status,
        status=STATUS[native_status],
        created_at=created_at,
        paid_at=paid_at,
        updated_at=_updated_at(order, created_at, paid_at),
        currency=CNY,
        goods_amount=_goods_amount(order, lines),
        shipping_amount=_amount(order, "freightPrice"),
        discount_amount=_discount(order),
        paid_amount=paid_amount,
        paid_cny=rates.to_cny(paid_amount, CNY, on=(paid_at or created_at).date()),
        lines=lines,
        recipient=_recipient(order.get("consigneeInfo")),
        buyer_note=optional_text(order.get("orderRemark"), "orderRemark"),
        flags=_flags(order, native_status),
    )


def _required_time(order: Mapping[str, Any], key: str) -> datetime:
    moment = optional_beijing_time(required(order, key), key)
    if moment is None:
        raise InvalidInput("required time is empty or a placeholder", path=key)
    return moment


def _updated_at(order: Mapping[str, Any], *known: datetime | None) -> datetime:
    modified = optional_beijing_time(order.get("modified"), "modified")
    return modified or max(t for t in known if t is not None)


def _amount(order: Mapping[str, Any], key: str) -> Decimal:
    value = order.get(key)
    return Decimal(0) if value is None else as_decimal(value, key)


def _goods_amount(order: Mapping[str, Any], lines: Sequence[OrderLine]) -> Decimal:
    # orderTotalPrice is the goods before discounts and freight (订单总金额).
    if order.get("orderTotalPrice") is not None:
        return as_decimal(order["orderTotalPrice"], "orderTotalPrice")
    return sum((line.unit_price * line.quantity for line in lines), Decimal(0))


def _discount(order: Mapping[str, Any]) -> Decimal:
    if order.get("sellerDiscount") is not None:
        return as_decimal(order["sellerDiscount"], "sellerDiscount")
    # orderSellerPrice is the goods after the seller's discount.
    if order.get("orderTotalPrice") is not None and order.get("orderSellerPrice") is not None:
        return _amount(order, "orderTotalPrice") - _amount(order, "orderSellerPrice")
    return Decimal(0)


def _lines(items: Sequence[Any]) -> tuple[OrderLine, ...]:
    if not items:
        raise InvalidInput("an order needs at least one item", path="itemInfoList")
    return tuple(_line(item, child("itemInfoList", i)) for i, item in enumerate(items))


def _line(value: Any, path: str) -> OrderLine:
    item = as_mapping(value, path)
    quantity = _quantity(required(item, "itemTotal", path), child(path, "itemTotal"))
    price = as_decimal(required(item, "jdPrice", path), child(path, "jdPrice"))
    sku_id = item.get("skuId")
    return build(
        OrderLine,
        path,
        sku=optional_text(item.get("outerSkuId"), child(path, "outerSkuId")),
        channel_sku_id=None if sku_id in (None, "") else id_text(sku_id, child(path, "skuId")),
        title=optional_text(item.get("skuName"), child(path, "skuName")) or "",
        quantity=quantity,
        unit_price=price,
        line_total=price * quantity,
    )


def _quantity(value: Any, path: str) -> int:
    """`itemTotal`, which JD sends as a digit string ("2"); a JSON integer is accepted too."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > MAX_QUANTITY_DIGITS:
            raise InvalidInput(f"not a plausible quantity: {value!r}", path=path)
        value = int(value)
    quantity = as_int(value, path)
    if quantity <= 0:
        raise InvalidInput(f"must be positive, got {quantity}", path=path)
    return quantity


def _recipient(value: Any) -> Recipient | None:
    if value is None:
        return None
    consignee = as_mapping(value, "consigneeInfo")

    def text(key: str) -> str | None:
        return optional_text(consignee.get(key), child("consigneeInfo", key))

    # fullname / fullAddress are ciphertext and mobile is masked (136*******5): kept as sent.
    return build(
        Recipient,
        "consigneeInfo",
        name=text("fullname"),
        phone=text("mobile") or text("telephone"),
        country="CN",
        province=full_province(text("province")),
        city=full_city(text("city")),
        district=text("county"),
        address=text("fullAddress"),
        postal_code=None,
    )


def _flags(order: Mapping[str, Any], native: str) -> tuple[str, ...]:
    flags: list[str] = []
    pay_type = optional_text(order.get("payType"), "payType")
    if pay_type is not None and pay_type.split("-", 1)[0] == COD_PAY_TYPE:
        flags.append("cod")
    if native in HOLD_FLAGS:
        flags.append(HOLD_FLAGS[native])
    return tuple(flags)
