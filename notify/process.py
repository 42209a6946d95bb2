"""Pure notification logic: which message a buyer gets for an event, and PII masking."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import OrderAllocated

EVENT_ALLOCATED = "allocated"


@dataclass(frozen=True)
class Message:
    """What to tell the buyer about one order event."""

    order_id: str
    event: str
    text: str


def render_allocated(allocated: OrderAllocated) -> Message:
    """The buyer-facing text for an allocated order (Chinese, the merchant's default)."""
    order = allocated.order
    units = sum(line.quantity for line in order.lines)
    text = (
        f"您的订单 {order.native_id} 已确认，共 {units} 件商品正在仓库备货，"
        "发货后将第一时间通知您。"
    )
    return Message(order_id=order.id, event=EVENT_ALLOCATED, text=text)


def mask(value: str | None, keep_tail: int = 4) -> str:
    """Mask personal data for logs: keep at most the last `keep_tail` characters."""
    if not value:
        return ""
    tail = value[-keep_tail:] if len(value) > keep_tail * 2 else ""
    return "*" * max(len(value) - len(tail), 3) + tail
