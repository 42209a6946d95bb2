"""Normalize's own metrics: orders mapped per channel."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter


class NormalizeMetrics(NamedTuple):
    mapped: Counter


def build(registry: CollectorRegistry) -> NormalizeMetrics:
    return NormalizeMetrics(
        mapped=Counter("orderhub_normalize_mapped", "Orders mapped", ["channel"], registry=registry)
    )
