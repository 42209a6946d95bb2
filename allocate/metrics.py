"""Allocate's own metrics: allocations and holds."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter


class AllocateMetrics(NamedTuple):
    allocated: Counter
    held: Counter
    contention_retries: Counter
    released: Counter


def build(registry: CollectorRegistry) -> AllocateMetrics:
    return AllocateMetrics(
        allocated=Counter("orderhub_allocate_allocated", "Orders allocated", registry=registry),
        held=Counter("orderhub_allocate_held", "Orders held", ["reason"], registry=registry),
        contention_retries=Counter(
            "orderhub_allocate_contention_retries",
            "Reservations retried because stock changed under the decision", registry=registry,
        ),
        released=Counter(
            "orderhub_allocate_released",
            "Reservations given back: order held for review, cancelled, refunded or a duplicate",
            registry=registry),
    )
