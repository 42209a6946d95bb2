"""Dedup stage wiring: orders.normalized → exact-duplicate check → orders.accepted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from dedup import metrics
from dedup.process import classify
from dedup.projection import claim_first_versions, record_acceptances
from normalize.projection import digest
from runtime.runner import Context, Emit
from runtime.settings import Settings
from schemas.events import Event, OrderAccepted, OrderNormalized
from schemas.topics import ACCEPTED, NORMALIZED, TopicSpec


class DedupStage:
    name = "dedup"
    sources: tuple[TopicSpec, ...] = (NORMALIZED,)

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = metrics.build(registry)

    def prepare(self, event: Event, ctx: Context) -> tuple[OrderNormalized, str]:
        normalized = cast(OrderNormalized, event)
        return normalized, digest(normalized.order)

    def project(
        self, conn: Connection, items: Sequence[tuple[OrderNormalized, str]], ctx: Context
    ) -> list[Emit]:
        firsts = claim_first_versions(conn, ((n.order.id, d) for n, d in items), ctx.now)
        emits: list[Emit] = []
        history = []
        for n, dg in items:
            verdict = classify(firsts[n.order.id], dg)
            self.metrics.verdicts.labels(channel=n.order.channel.value, verdict=verdict).inc()
            history.append((n.order.id, verdict, dg, ctx.now))
            emits.append(Emit(ACCEPTED, n.order.id, OrderAccepted(order=n.order, reason=verdict)))
        record_acceptances(conn, history)
        return emits


def build(settings: Settings, registry: CollectorRegistry) -> DedupStage:
    return DedupStage(registry)
