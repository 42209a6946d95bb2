"""Ingest's own metrics: orders produced, inputs rejected, pushes answered, polls made."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics(NamedTuple):
    received: Counter
    rejected: Counter
    webhooks: Counter
    polls: Counter
    poll_lag: Gauge


def build(registry: CollectorRegistry) -> IngestMetrics:
    labels = ["channel", "transport"]
    return IngestMetrics(
        received=Counter("orderhub_ingest_received", "Orders written to orders.raw", labels,
                         registry=registry),
        rejected=Counter("orderhub_ingest_rejected", "Inputs dead-lettered by ingest", labels,
                         registry=registry),
        webhooks=Counter("orderhub_ingest_webhooks", "Push requests answered, by outcome",
                         ["channel", "outcome"], registry=registry),
        polls=Counter("orderhub_ingest_polls", "Pull requests made, by outcome",
                      ["channel", "outcome"], registry=registry),
        poll_lag=Gauge("orderhub_ingest_poll_lag_seconds",
                       "How far each channel's oldest shop cursor is behind now", ["channel"],
                       registry=registry),
    )
