"""Prometheus metrics every stage shares, declared once and built from an injected registry."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram

BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000)


class StageMetrics(NamedTuple):
    consumed: Counter
    produced: Counter
    dead_lettered: Counter
    retries: Counter
    batch_seconds: Histogram
    projection_seconds: Histogram
    batch_size: Histogram


def build_stage_metrics(stage: str, registry: CollectorRegistry) -> StageMetrics:
    """The runner's metrics for one stage, named `orderhub_<stage>_…` (DESIGN section 6)."""
    p = f"orderhub_{stage}"
    return StageMetrics(
        consumed=Counter(f"{p}_consumed", "Messages consumed", ["outcome"], registry=registry),
        produced=Counter(f"{p}_produced", "Messages produced", ["topic"], registry=registry),
        dead_lettered=Counter(
            f"{p}_dead_lettered", "Inputs sent to the DLQ", ["error_class"], registry=registry
        ),
        retries=Counter(f"{p}_retries", "Transient failures retried", registry=registry),
        batch_seconds=Histogram(
            f"{p}_batch_seconds", "Time to process one batch end to end", registry=registry
        ),
        projection_seconds=Histogram(
            f"{p}_projection_seconds", "Time of the batch's Postgres transaction",
            registry=registry,
        ),
        batch_size=Histogram(
            f"{p}_batch_size", "Messages per batch", buckets=BATCH_BUCKETS, registry=registry
        ),
    )
