"""Taobao / Tmall TOP trades (trade.fullinfo.get, trades.sold.get) -> canonical Order."""

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

# Trade `status` -> canonical status; TRADE_CLOSED depends on payment (see `_status`).
STATUS: Mapping[str, OrderStatus] = {
    "TRADE_NO_CREATE_PAY": S.PENDING_PAYMENT,
    "WAIT_BUYER_PAY": S.PENDING_PAYMENT,  # also a presale whose deposit is paid, balance not
    "PAY_PENDING": S.PENDING_PAYMENT,  # foreign card payment being confirmed
    "WAIT_PRE_AUTH_CONFIRM": S.PENDING_PAYMENT,  # 0-yuan contract purchase not yet confirmed
    "WAIT_SELLER_SEND_GOODS": S.PAID,
    # Paid, but Taobao forbids shipping (group buy not formed, consignment control). Allocation
    # ships every `paid` order, so it is held until Taobao moves it to WAIT_SELLER_SEND_GOODS.
    "PAID_FORBID_CONSIGN": S.REVIEW_HOLD,
    "SELLER_CONSIGNED_PART": S.SHIPPED,
    "WAIT_BUYER_CONFIRM_GOODS": S.SHIPPED,
    "TRADE_BUYER_SIGNED": S.DELIVERED,
    "TRADE_FINISHED": S.COMPLETED,
    "TRADE_CLOSED_BY_TAOBAO": S.CANCELLED,  # closed before payment, by buyer, seller or timeout
}
# TOP: "TRADE_CLOSED: 付款以后用户退款成功，交易自动关闭" - closed because the refund succeeded.
# A TRADE_CLOSED trade without pay_time was never paid, so nothing was refunded: cancelled.
CLOSED = "TRADE_CLOSED"
CLOSED_LINES = frozenset({"TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"})
UNPAID = frozenset({S.PENDING_PAYMENT, S.CANCELLED})
RECEIVER = ("name", "mobile", "phone", "state", "city", "district", "address", "zip")


def map_order(payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order:
    """The canonical Order for one TOP trade; any unusable field raises InvalidInput."""
    trade = as_mapping(payload, "")
    native_id = _tid(trade)
    native_status = as_text(required(trade, "status"), "status")
    created_at = _required_time(trade, "created")
    pay_time = optional_beijing_time(trade.get("pay_time"), "pay_time")
    status = _status(native_status, pay_time)
    paid_at = None if status in UNPAID else pay_time
    paid_amount = as_decimal(required(trade, "payment"), "payment")
    shipping = _amount(trade, "post_fee")
    lines, partly_closed = _lines(trade, shipping)
    return build(
        Order,
        id=canonical_id(Channel.TAOBAO, native_id),
        channel=Channel.TAOBAO,
        shop=shop,
        native_id=native_id,
        native_status=native_status,
        status=status,
        created_at=created_at,
        paid_at=paid_at,
        updated_at=_updated_at(trade, created_at, pay_time),
        currency=CNY,
        goods_amount=_goods_amount(trade, lines),
        shipping_amount=shipping,
        discount_amount=_amount(trade, "discount_fee"),
        paid_amount=paid_amount,
        paid_cny=rates.to_cny(paid_amount, CNY, on=(paid_at or created_at).date()),
        lines=lines,
        recipient=_recipient(trade),
        buyer_note=optional_text(trade.get("buyer_message"), "buyer_message"),
        flags=_flags(trade, native_status, partly_closed),
    )


def _tid(trade: Mapping[str, Any]) -> str:
    # tid is a JSON number of up to 19 digits; tid_str is the same id, safe from float parsers.
    if trade.get("tid_str") is not None:
        return id_text(trade["tid_str"], "tid_str")
    return id_text(required(trade, "tid"), "tid")


def _status(native: str, pay_time: datetime | None) -> OrderStatus:
    if native == CLOSED:
        return S.CANCELLED if pay_time is None else S.REFUNDED
    if native not in STATUS:
        raise InvalidInput(f"unknown value {native!r}", path="status")
    return STATUS[native]


def _required_time(trade: Mapping[str, Any], key: str) -> datetime:
    moment = optional_beijing_time(required(trade, key), key)
    if moment is None:
        raise InvalidInput("required time is empty or a placeholder", path=key)
    return moment


def _updated_at(trade: Mapping[str, Any], *known: datetime | None) -> datetime:
    modified = optional_beijing_time(trade.get("modified"), "modified")
    if modified is not None:
        return modified
    later = (optional_beijing_time(trade.get(k), k) for k in ("consign_time", "end_time"))
    return max(t for t in (*known, *later) if t is not None)


def _amount(trade: Mapping[str, Any], key: str) -> Decimal:
    value = trade.get(key)
    return Decimal(0) if value is None else as_decimal(value, key)


def _lines(trade: Mapping[str, Any], shipping: Decimal) -> tuple[tuple[OrderLine, ...], bool]:
    """Lines still to fulfil, and whether some sub-orders were closed (refunded) on their own.

    A sub-order refunded before shipping is closed while the trade stays open; shipping it would
    send goods the buyer got their money back for. A wholly closed trade keeps all its lines.
    """
    items, path = _sub_orders(trade)
    if not items:
        raise InvalidInput("a trade needs at least one sub-order", path=path)
    # TOP: a lone sub-order's `payment` includes the trade's postage; with several it does not.
    postage = shipping if len(items) == 1 else Decimal(0)
    lines = [_line(item, child(path, i), postage) for i, item in enumerate(items)]
    open_lines = tuple(line for line, closed in lines if not closed)
    if not open_lines:
        return tuple(line for line, _ in lines), False
    return open_lines, len(open_lines) < len(lines)


def _sub_orders(trade: Mapping[str, Any]) -> tuple[Sequence[Any], str]:
    orders = required(trade, "orders")
    if isinstance(orders, Mapping):  # TOP JSON: {"orders": {"order": [...]}}
        return as_list(required(orders, "order", "orders"), "orders.order"), "orders.order"
    return as_list(orders, "orders"), "orders"


def _line(value: Any, path: str, postage: Decimal) -> tuple[OrderLine, bool]:
    item = as_mapping(value, path)

    def text(key: str) -> str | None:
        return optional_text(item.get(key), child(path, key))

    quantity = as_int(required(item, "num", path), child(path, "num"))
    if quantity <= 0:
        raise InvalidInput(f"must be positive, got {quantity}", path=child(path, "num"))
    line = build(
        OrderLine,
        path,
        sku=text("outer_sku_id") or text("outer_iid"),
        channel_sku_id=_optional_id(item, "sku_id", path),
        title=text("title") or "",
        quantity=quantity,
        unit_price=as_decimal(required(item, "price", path), child(path, "price")),
        line_total=_line_total(item, path, postage),
    )
    return line, text("status") in CLOSED_LINES


def _optional_id(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":  # TOP sends "" for an item without SKUs
        return None
    return id_text(value, child(path, key))


def _line_total(item: Mapping[str, Any], path: str, postage: Decimal) -> Decimal:
    # divide_order_fee is the sub-order's share of what the buyer paid after trade discounts.
    if item.get("divide_order_fee") is not None:
        return as_decimal(item["divide_order_fee"], child(path, "divide_order_fee"))
    return as_decimal(required(item, "payment", path), child(path, "payment")) - postage


def _goods_amount(trade: Mapping[str, Any], lines: Sequence[OrderLine]) -> Decimal:
    if trade.get("total_fee") is not None:
        return as_decimal(trade["total_fee"], "total_fee")
    return sum((line.unit_price * line.quantity for line in lines), Decimal(0))


def _recipient(trade: Mapping[str, Any]) -> Recipient | None:
    def text(key: str) -> str | None:
        return optional_text(trade.get(key), key)

    if all(text(f"receiver_{key}") is None for key in RECEIVER):
        return None
    # Name, phone and address arrive encrypted (or masked) and stay exactly as sent.
    # TOP: county-level cities directly under a province (济源) come only in receiver_district.
    return build(
        Recipient,
        name=text("receiver_name"),
        phone=text("receiver_mobile") or text("receiver_phone"),
        country="CN",
        province=full_province(text("receiver_state")),
        city=full_city(text("receiver_city") or text("receiver_district")),
        district=text("receiver_district"),
        address=text("receiver_address"),
        postal_code=text("receiver_zip"),
    )


def _flags(trade: Mapping[str, Any], native: str, partly_closed: bool) -> tuple[str, ...]:
    kind = optional_text(trade.get("type"), "type")
    step = optional_text(trade.get("step_trade_status"), "step_trade_status")
    flags: list[str] = []
    # Presales are phased-payment ("step") trades: deposit first, balance later.
    if kind == "step" or step is not None or trade.get("new_presell") is True:
        flags.append("presale")
    if kind == "cod":
        flags.append("cod")
    if trade.get("cross_bonded_declare") is True or trade.get("post_gate_declare") is True:
        flags.append("cross_border")
    if native == "PAID_FORBID_CONSIGN":
        flags.append("consign_forbidden")
    if partly_closed:
        flags.append("partly_refunded")
    return tuple(flags)
