"""Notify's own metrics: messages sent per channel."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter


class NotifyMetrics(NamedTuple):
    sent: Counter


def build(registry: CollectorRegistry) -> NotifyMetrics:
    return NotifyMetrics(
        sent=Counter("orderhub_notify_sent", "Buyer messages sent", ["channel", "event"],
                     registry=registry)
    )
