"""Pure notification decisions: which events an input is, who can hear about it, and when.

No I/O and no clock: the time, the order and the merchant's configuration are arguments.
- `triggers` turns a consumed event into the notify events it stands for;
- `route` picks the provider and address for one configured channel, or says why there is none;
- `not_before` applies the quiet hours; `retry_in` the backoff;
- `idempotency_key` is what every provider call carries, so a resend is recognisable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from schemas.base import SHANGHAI
from schemas.events import OrderAccepted, OrderAllocated, OrderStatusChanged
from schemas.order import Order, OrderStatus

S = OrderStatus
EVENT_OF_STATUS: dict[OrderStatus, str] = {
    S.PAID: "paid", S.ALLOCATED: "allocated", S.SHIPPED: "shipped", S.DELIVERED: "delivered",
    S.CANCELLED: "cancelled", S.REFUNDED: "refunded", S.RETURNED: "returned",
}
RETURN_RECEIVED = "return_received"
MAINLAND_MOBILE = re.compile(r"(?:\+?86)?(1[3-9]\d{9})")
INTERNATIONAL = re.compile(r"\+([1-9]\d{7,14})")
PHONE_PUNCTUATION = re.compile(r"[\s\-()]")


@dataclass(frozen=True)
class Trigger:
    """One event a buyer may hear about, with what the message needs beyond the order."""

    order_id: str
    event: str
    at: datetime
    carrier: str | None = None
    waybill: str | None = None
    reason: str | None = None
    qc_grade: str | None = None


@dataclass(frozen=True)
class Providers:
    """Which providers the merchant configured (credentials present)."""

    sms: bool = False
    wechat: str | None = None  # "wechat_subscribe" | "wechat_template" | None
    webhook: str | None = None  # the merchant's URL


@dataclass(frozen=True)
class Route:
    """Send through `provider` to `target`."""

    provider: str
    target: str


@dataclass(frozen=True)
class Skip:
    """Nothing can be sent on this channel for this order; `reason` says why."""

    reason: str


def triggers(item: OrderAccepted | OrderAllocated | OrderStatusChanged) -> list[Trigger]:
    """The notify events an input stands for (none for holds, reviews and the like)."""
    if isinstance(item, OrderAllocated):
        return [Trigger(item.order.id, "allocated", item.allocated_at)]
    if isinstance(item, OrderAccepted):
        event = EVENT_OF_STATUS.get(item.order.status)
        at = item.order.paid_at if event == "paid" and item.order.paid_at else item.order.updated_at
        return [Trigger(item.order.id, event, at)] if event else []
    if item.milestone == RETURN_RECEIVED:
        return [Trigger(item.order_id, RETURN_RECEIVED, item.at, reason=item.reason)]
    event = EVENT_OF_STATUS.get(item.status)
    if event is None or item.milestone:
        return []
    return [Trigger(item.order_id, event, item.at, carrier=item.carrier, waybill=item.waybill,
                    reason=item.reason, qc_grade=_grade(item.reason))]


def _grade(reason: str | None) -> str | None:
    found = re.search(r"\bgrade ([ABC])\b", reason or "")
    return found.group(1) if found else None


def usable_phone(phone: str | None) -> str | Skip:
    """A number an SMS can go to (mainland: 11 digits; abroad: country code and number), or
    why not. Masked (`138****5678`) and ciphertext phones are never usable."""
    if not phone or not phone.strip():
        return Skip("no phone on the order")
    if "*" in phone:
        return Skip("phone is masked by the channel")
    compact = PHONE_PUNCTUATION.sub("", phone)
    if m := MAINLAND_MOBILE.fullmatch(compact):
        return m.group(1)
    if (m := INTERNATIONAL.fullmatch(compact)) and not compact.startswith("+86"):
        return m.group(1)
    if compact.isdigit():
        return Skip("phone is not a mobile number")
    return Skip("phone is ciphertext (the channel encrypts it)")


def route(channel: str, order: Order, providers: Providers) -> Route | Skip:
    """Where `channel` sends this order's message: `buyer` prefers WeChat, then SMS."""
    if channel == "log":
        return Route("log", "log")
    if channel == "webhook":
        return Route("webhook", providers.webhook) if providers.webhook else Skip(
            "no merchant webhook configured")
    if channel == "wechat":
        return _wechat(order, providers)
    if channel == "sms":
        return _sms(order, providers)
    if channel == "buyer":
        wechat = _wechat(order, providers)
        if isinstance(wechat, Route):
            return wechat
        sms = _sms(order, providers)
        return sms if isinstance(sms, Route) else Skip(f"{wechat.reason}; {sms.reason}")
    raise ValueError(f"unknown notify channel {channel!r}")


def _wechat(order: Order, providers: Providers) -> Route | Skip:
    if not order.buyer_openid:
        return Skip("no WeChat openid on the order")
    if providers.wechat is None:
        return Skip("WeChat messages not configured")
    return Route(providers.wechat, order.buyer_openid)


def _sms(order: Order, providers: Providers) -> Route | Skip:
    phone = usable_phone(order.recipient.phone if order.recipient else None)
    if isinstance(phone, Skip):
        return phone
    if not providers.sms:
        return Skip("SMS not configured")
    return Route("aliyun_sms", phone)


def kind_of(provider: str) -> str:
    """The template channel of a provider: aliyun_sms → sms, wechat_* → wechat, …"""
    return "sms" if provider == "aliyun_sms" else provider.split("_")[0]


def quiet_until(now: datetime, start: time, end: time) -> datetime | None:
    """The end of the quiet hours (GMT+8) when `now` falls inside them, else None.

    A window that crosses midnight (22:00–08:00) is the usual case; start == end means none.
    """
    local = now.astimezone(SHANGHAI)
    clock = local.time().replace(tzinfo=None)
    if start == end:
        return None
    inside = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=SHANGHAI)


def retry_in(attempts: int, base_s: float, max_s: float, asked_s: float | None = None) -> float:
    """Seconds before attempt `attempts + 1`: base × 2^(attempts-1), capped, never less than
    what a throttling answer asked for."""
    backoff: float = min(max_s, base_s * 2.0 ** max(attempts - 1, 0))
    return max(backoff, asked_s or 0.0)


def idempotency_key(order_id: str, event: str, channel: str) -> str:
    """32 hex characters, the same for every attempt at this message (WeChat's client_msg_id
    and Aliyun's OutId both take it)."""
    return hashlib.sha256(f"{order_id}\x1f{event}\x1f{channel}".encode()).hexdigest()[:32]


def mask(value: str | None, keep_tail: int = 4) -> str:
    """Mask personal data for logs: keep at most the last `keep_tail` characters."""
    if not value:
        return ""
    tail = value[-keep_tail:] if len(value) > keep_tail * 2 else ""
    return "*" * max(len(value) - len(tail), 3) + tail
