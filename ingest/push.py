"""What every channel's push handler shares: the verified delivery and how it is refused.

A channel that pushes provides, in `ingest/<channel>.py`, a pure function

    verify_push(request: PushRequest, secrets: PushSecrets, now: datetime) -> Delivery

`request.headers` has lower-case names; `request.body` is the raw request body, verified (constant
time) BEFORE it is parsed. It raises `Unauthorized` for a missing/forged signature or a stale
timestamp (the receiver answers 401 and produces nothing) and `InvalidInput` for a body that is
signed but not understood (the receiver dead-letters it and answers 200 so the channel stops
retrying it).
The receiver (`ingest/receiver.py`) deduplicates on `delivery_id`, produces the orders to
`orders.raw` and the status changes to `orders.status`, records `fetch` ids for the shop's
poller, then answers with `response`.

Channels whose pushes arrive as message frames over their own transport (Taobao TMC through
`taobao.tmc.messages.consume`, Pinduoduo's message WebSocket) provide a `Messages` class
satisfying `MessageSource`; the poll process runs it and treats each frame like a push.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from schemas.errors import OrderhubError
from schemas.events import OrderStatusChanged

# A push older than this (by its own signed timestamp) is refused as a possible replay.
MAX_AGE_S = 300.0
MAX_BODY_BYTES = 1024 * 1024


class Unauthorized(OrderhubError):
    """Signature missing, forged or over a tampered body, or the timestamp is stale."""


@dataclass(frozen=True)
class Delivery:
    """What one verified push asks orderhub to do.

    `orders`: full native order payloads (what the channel's mapper accepts) → orders.raw.
    `status_changes`: events for orders the channel only notified about → orders.status.
    `fetch`: native ids whose full order the shop's poller should fetch now.
    `response`: the body the channel expects back (Douyin `{"code":0,"msg":"success"}`,
    WeChat `success`); `content_type` its type.
    `invalid`: set on a frame that could not be read, the reason it goes to the DLQ with
    `original` (the frame as received); it carries no orders, status changes or fetches, and
    still its `ack`, so the channel stops resending it.
    """

    delivery_id: str
    shop: str
    orders: list[Mapping[str, Any]] = field(default_factory=list)
    status_changes: list[OrderStatusChanged] = field(default_factory=list)
    fetch: list[str] = field(default_factory=list)
    response: bytes = b""
    content_type: str = "text/plain"
    ack: str | None = None  # the channel's message id to confirm (TMC, PDD frames)
    invalid: str | None = None
    original: bytes = b""


@dataclass(frozen=True)
class PushRequest:
    """One HTTP push as it arrived: lower-case header names, query parameters, the raw body."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class PushSecrets:
    """The receiver's secrets for one channel, from settings (never logged)."""

    secret: str = field(default="", repr=False)  # Shopify client secret, Douyin app secret,
    #                                              WeChat token
    app_key: str = ""  # Douyin app key (part of event-sign)
    options: Mapping[str, str] = field(default_factory=dict)


class MessageSource(Protocol):
    """Frames from a channel's message service. Construct with `(shop, session, clock)`."""

    channel: ClassVar[str]

    async def messages(self) -> list[Delivery]:
        """The next frames as deliveries; waits a few seconds at most and may return []."""
        ...

    async def confirm(self, deliveries: Sequence[Delivery]) -> None:
        """Tell the channel these were produced (by their `ack` ids) so it stops resending."""
        ...
