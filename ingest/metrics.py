"""Ingest's own metrics: envelopes produced and inputs rejected, per channel and transport."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter


class IngestMetrics(NamedTuple):
    received: Counter
    rejected: Counter


def build(registry: CollectorRegistry) -> IngestMetrics:
    labels = ["channel", "transport"]
    return IngestMetrics(
        received=Counter("orderhub_ingest_received", "Orders written to orders.raw", labels,
                         registry=registry),
        rejected=Counter("orderhub_ingest_rejected", "Inputs dead-lettered by ingest", labels,
                         registry=registry),
    )
