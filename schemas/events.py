"""Event models carried on the topics (DESIGN section 2); each has a schema_version."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field

from schemas.base import BeijingTime, Contract
from schemas.order import Order, OrderStatus


class Event(Contract):
    """Base of every topic value."""

    schema_version: int = Field(default=1, description="bumped on incompatible changes")


class RawOrderReceived(Event):
    """A channel's native order payload, untouched, as ingest received it."""

    channel: str = Field(description="channel name; unknown channels are dead-lettered")
    shop: str
    native_id: str
    transport: Literal["webhook", "poll", "file"]
    received_at: AwareDatetime = Field(description="arrival time at orderhub (UTC)")
    delivery_id: str = Field(description="unique per delivery: webhook id, poll cursor, file+line")
    payload: dict[str, Any] = Field(description="the channel's native order object")


class OrderNormalized(Event):
    """The canonical order a mapper produced from one raw payload."""

    order: Order
    delivery_id: str
    received_at: AwareDatetime


class OrderAccepted(Event):
    """An order passed dedup: the first sighting of its id, an update, or released from review."""

    order: Order
    reason: Literal["unique", "update", "released"]


class DuplicateSuspected(Event):
    """A second order that looks like one already accepted; held for a person to decide."""

    order: Order
    duplicate_of: str
    matched_fields: tuple[str, ...]
    reason: str


class ShipmentLine(Contract):
    """Units of one SKU sent from one warehouse."""

    line_no: int
    sku: str
    quantity: int = Field(gt=0)


class Shipment(Contract):
    """One parcel's worth of lines from one warehouse, and why that warehouse."""

    warehouse: str
    lines: tuple[ShipmentLine, ...]
    reason: str


class OrderAllocated(Event):
    """Stock for every line is reserved in the named warehouses."""

    order: Order
    shipments: tuple[Shipment, ...]
    rule: str
    allocated_at: BeijingTime


class Hold(Contract):
    """Why an order waits, and the facts a person needs to decide."""

    reason: Literal[
        "suspected_duplicate", "awaiting_approval", "out_of_stock", "no_warehouse", "unknown_sku",
        "qc",
    ]
    details: dict[str, str] = Field(default_factory=dict)


class OrderHeld(Event):
    """The order stops here until stock, a person or a rule lets it continue."""

    order: Order
    hold: Hold
    held_at: BeijingTime


class OrderStatusChanged(Event):
    """A status change reported by a channel, a warehouse, an approval or a review."""

    order_id: str
    status: OrderStatus
    at: BeijingTime
    source: str = Field(description="who reported it: channel name, stage, or person")
    reason: str | None = None
    carrier: str | None = None
    waybill: str | None = None
    duplicate_of: str | None = Field(
        default=None, description="with status `duplicate`: the order this one duplicates")
    milestone: Literal["return_received"] | None = Field(default=None, description=(
        "a step inside the status (the status itself does not change): `return_received` "
        "when the warehouse got the parcel back, before QC"))


class BuyerNotified(Event):
    """What became of one notification (order × event × configured channel): sent, skipped
    (nobody reachable, with the reason) or failed (retries spent; also on orders.dlq)."""

    order_id: str
    event: str
    channel: str
    message: str
    sent_at: BeijingTime = Field(description="when it was sent, skipped or given up")
    outcome: Literal["sent", "skipped", "failed"] = "sent"
    provider: str | None = Field(default=None, description="aliyun_sms, wechat_subscribe, "
                                 "wechat_template, webhook or log; None when skipped")
    reason: str | None = Field(default=None, description="why it was skipped or failed")
    attempts: int = 0


class InventoryChanged(Event):
    """Stock of one SKU in one warehouse was set, adjusted, reserved below safety, or received."""

    kind: Literal[
        "stock_set", "stock_adjusted", "stock_received", "low_stock", "shipped",
        "returned_sellable", "returned_defective", "scrapped",
    ]
    warehouse: str
    sku: str
    available: int
    delta: int = 0
    at: BeijingTime
    source: str


class DeadLetter(Event):
    """An input a stage could not accept, with the reason and the original bytes."""

    stage: str
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="original key, UTF-8 decoded with replacement")
    error_class: str
    message: str
    original: str = Field(description="original value bytes, base64")
    at: BeijingTime
