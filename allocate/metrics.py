"""Allocate's own metrics: allocations and holds."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter


class AllocateMetrics(NamedTuple):
    allocated: Counter
    held: Counter
    contention_retries: Counter
    released: Counter
    backorders_released: Counter
    low_stock: Counter


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
        backorders_released=Counter(
            "orderhub_allocate_backorders_released",
            "Backordered orders allocated when stock arrived or was freed", registry=registry),
        low_stock=Counter("orderhub_allocate_low_stock",
                          "Times a SKU's available stock fell below its safety stock",
                          registry=registry),
    )
