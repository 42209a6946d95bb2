"""Prometheus metrics every stage shares, declared once and built from an injected registry."""

from __future__ import annotations

from collections.abc import Mapping, Set
from contextlib import suppress
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
TopicPartition = tuple[str, int]


class StageMetrics(NamedTuple):
    consumed: Counter
    produced: Counter
    dead_lettered: Counter
    retries: Counter
    batch_seconds: Histogram
    projection_seconds: Histogram
    batch_size: Histogram
    latency_seconds: Histogram
    consumer_lag: Gauge


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
        latency_seconds=Histogram(
            f"{p}_latency_seconds",
            "Per input message: from its Kafka timestamp to its batch's outputs acknowledged",
            buckets=LATENCY_BUCKETS, registry=registry,
        ),
        consumer_lag=Gauge(
            f"{p}_consumer_lag",
            "Messages not yet processed by this worker: highwater minus position, per "
            "assigned partition", ["topic", "partition"], registry=registry,
        ),
    )


def publish_lag(gauge: Gauge, lags: Mapping[TopicPartition, int],
                shown: Set[TopicPartition]) -> set[TopicPartition]:
    """Set one series per partition in `lags` and drop the series of partitions no longer
    there (revoked); returns the partitions now shown, to pass back next time."""
    for topic, partition in shown - lags.keys():
        with suppress(KeyError):  # already gone: nothing to remove
            gauge.remove(topic, str(partition))
    for (topic, partition), lag in lags.items():
        gauge.labels(topic=topic, partition=str(partition)).set(lag)
    return set(lags)
