"""Notification channels; `log` writes the message to the log with the buyer masked."""

from __future__ import annotations

import logging
from typing import Protocol

from notify.process import Message, mask
from schemas.errors import ConfigurationError
from schemas.order import Order

log = logging.getLogger("orderhub.notify.log")


class NotificationChannel(Protocol):
    name: str

    def send(self, order: Order, message: Message) -> None:
        """Deliver `message`; raise TransientError when the provider may recover."""
        ...


class LogChannel:
    """Writes each message to the log: for development, demos and audits."""

    name = "log"

    def send(self, order: Order, message: Message) -> None:
        phone = order.recipient.phone if order.recipient else None
        log.info("notify %s %s to %s: %s", message.order_id, message.event, mask(phone),
                 message.text)


def build_channels(names: tuple[str, ...]) -> dict[str, NotificationChannel]:
    known: dict[str, NotificationChannel] = {"log": LogChannel()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigurationError(
            f"unknown notification channel(s) {unknown}; available: {sorted(known)}"
        )
    return {n: known[n] for n in names}
