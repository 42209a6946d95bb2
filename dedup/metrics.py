"""Dedup's own metrics: verdicts, suspects raised, the open review queue, time to decision."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DedupMetrics(NamedTuple):
    verdicts: Counter
    suspects: Counter
    open_reviews: Gauge
    decision_seconds: Histogram


def build(registry: CollectorRegistry) -> DedupMetrics:
    return DedupMetrics(
        verdicts=Counter(
            "orderhub_dedup_verdicts",
            "Normalized orders by verdict: unique, update, duplicate (an exact duplicate dropped)",
            ["channel", "verdict"], registry=registry),
        suspects=Counter("orderhub_dedup_suspects", "Suspected duplicates raised for review",
                         ["channel"], registry=registry),
        open_reviews=Gauge("orderhub_dedup_open_reviews", "Review items waiting for a person",
                           registry=registry),
        decision_seconds=Histogram(
            "orderhub_dedup_decision_seconds", "From raising a review item to its decision",
            ["outcome"], registry=registry,
            buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)),
    )
