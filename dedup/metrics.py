"""Dedup's own metrics: verdicts per channel."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter


class DedupMetrics(NamedTuple):
    verdicts: Counter


def build(registry: CollectorRegistry) -> DedupMetrics:
    return DedupMetrics(
        verdicts=Counter(
            "orderhub_dedup_verdicts", "Dedup decisions", ["channel", "verdict"], registry=registry
        )
    )
