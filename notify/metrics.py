"""Notify's own metrics: what happened to each message, per channel, provider and reason."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NotifyMetrics(NamedTuple):
    planned: Counter
    sent: Counter
    failed: Counter
    deferred: Counter
    skipped: Counter
    retried: Counter
    provider_seconds: Histogram
    outstanding: Gauge


def build(registry: CollectorRegistry) -> NotifyMetrics:
    """Reasons are a fixed set of phrases (never a provider's free text), so labels stay bounded."""
    return NotifyMetrics(
        planned=Counter("orderhub_notify_planned",
                        "Notifications planned (a redelivered input counts again)",
                        ["event", "channel"], registry=registry),
        sent=Counter("orderhub_notify_sent", "Messages a provider accepted",
                     ["channel", "provider"], registry=registry),
        failed=Counter("orderhub_notify_failed", "Messages given up (also on orders.dlq)",
                       ["channel", "provider", "reason"], registry=registry),
        deferred=Counter("orderhub_notify_deferred", "Sends put off: quiet hours or a retry",
                         ["channel", "reason"], registry=registry),
        skipped=Counter("orderhub_notify_skipped", "Notifications with nobody to send to",
                        ["channel", "reason"], registry=registry),
        retried=Counter("orderhub_notify_retried", "Provider calls that will be tried again",
                        ["provider", "reason"], registry=registry),
        provider_seconds=Histogram("orderhub_notify_provider_seconds", "Provider call latency",
                                   ["provider"], buckets=PROVIDER_BUCKETS, registry=registry),
        outstanding=Gauge("orderhub_notify_outstanding",
                          "Sends the last sender round claimed", registry=registry),
    )
