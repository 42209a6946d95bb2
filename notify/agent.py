"""Notify stage wiring: orders.allocated → buyer message per channel → orders.notified."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from notify import metrics
from notify.channels import NotificationChannel, build_channels
from notify.process import render_allocated
from notify.projection import claim, load, mark_sent
from runtime.runner import Context, Emit
from runtime.settings import Settings
from schemas.events import BuyerNotified, Event, OrderAllocated
from schemas.topics import ALLOCATED, NOTIFIED, TopicSpec


class NotifyStage:
    name = "notify"
    sources: tuple[TopicSpec, ...] = (ALLOCATED,)

    def __init__(self, channels: dict[str, NotificationChannel],
                 registry: CollectorRegistry) -> None:
        self.channels = channels
        self.metrics = metrics.build(registry)

    def prepare(self, event: Event, ctx: Context) -> OrderAllocated:
        return cast(OrderAllocated, event)

    def project(
        self, conn: Connection, items: Sequence[OrderAllocated], ctx: Context
    ) -> list[Emit]:
        emits: list[Emit] = []
        for allocated in items:
            message = render_allocated(allocated)
            for name, channel in self.channels.items():
                if claim(conn, message.order_id, message.event, name, message.text, ctx.now):
                    # The log channel cannot fail; providers that can (SMS, WeChat) commit the
                    # claim before calling out and mark it after (notify issue).
                    channel.send(allocated.order, message)
                    mark_sent(conn, message.order_id, message.event, name, ctx.now)
                    self.metrics.sent.labels(channel=name, event=message.event).inc()
                row = load(conn, message.order_id, message.event, name)
                notified = BuyerNotified(
                    order_id=message.order_id, event=message.event, channel=name,
                    message=row["message"], sent_at=row["sent_at"] or row["claimed_at"],
                )
                emits.append(Emit(NOTIFIED, message.order_id, notified))
        return emits


def build(settings: Settings, registry: CollectorRegistry) -> NotifyStage:
    return NotifyStage(build_channels(settings.notify_channels), registry)
