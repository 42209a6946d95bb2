"""Normalize's own metrics: orders mapped per channel, channel status changes by outcome."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter


class NormalizeMetrics(NamedTuple):
    mapped: Counter
    status_changes: Counter


def build(registry: CollectorRegistry) -> NormalizeMetrics:
    return NormalizeMetrics(
        mapped=Counter("orderhub_normalize_mapped", "Orders mapped", ["channel"],
                       registry=registry),
        status_changes=Counter(
            "orderhub_normalize_status_changes",
            "Status changes from orders.status: applied, refused by the state machine, or for "
            "an order not projected yet", ["outcome"], registry=registry),
    )
