"""The topic registry: every topic's name, key, value model and partition count, once."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import (
    BuyerNotified,
    DeadLetter,
    DuplicateSuspected,
    Event,
    InventoryChanged,
    OrderAccepted,
    OrderAllocated,
    OrderHeld,
    OrderNormalized,
    OrderStatusChanged,
    RawOrderReceived,
)

DEFAULT_PARTITIONS = 6


@dataclass(frozen=True)
class TopicSpec:
    """A topic as declared by orderhub; `name` is prefixed per deployment by the settings."""

    name: str
    key: str
    value: type[Event]
    partitions: int = DEFAULT_PARTITIONS

    def full_name(self, prefix: str = "") -> str:
        """The topic name on the broker, with the deployment's prefix."""
        return f"{prefix}{self.name}"


RAW = TopicSpec("orders.raw", "{channel}:{shop}:{native order id}", RawOrderReceived)
NORMALIZED = TopicSpec("orders.normalized", "canonical order id", OrderNormalized)
ACCEPTED = TopicSpec("orders.accepted", "canonical order id", OrderAccepted)
REVIEW = TopicSpec("orders.review", "canonical order id", DuplicateSuspected)
ALLOCATED = TopicSpec("orders.allocated", "canonical order id", OrderAllocated)
HELD = TopicSpec("orders.held", "canonical order id", OrderHeld)
STATUS = TopicSpec("orders.status", "canonical order id", OrderStatusChanged)
NOTIFIED = TopicSpec("orders.notified", "canonical order id", BuyerNotified)
INVENTORY = TopicSpec("inventory.events", "sku", InventoryChanged)
DLQ = TopicSpec("orders.dlq", "original key", DeadLetter)

TOPICS: tuple[TopicSpec, ...] = (
    RAW, NORMALIZED, ACCEPTED, REVIEW, ALLOCATED, HELD, STATUS, NOTIFIED, INVENTORY, DLQ,
)
