"""The composition table: each stage's input topics and the factory that builds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from allocate import agent as allocate_agent
from dedup import agent as dedup_agent
from normalize import agent as normalize_agent
from notify import agent as notify_agent
from runtime.runner import Stage
from runtime.settings import Settings
from schemas.topics import TopicSpec

StageFactory = Callable[[Settings, CollectorRegistry], Stage[Any]]


@dataclass(frozen=True)
class StageEntry:
    sources: tuple[TopicSpec, ...]
    build: StageFactory


# Pipeline order: drain reads consumer lag in this order (see runtime.kafka.group_lag).
STAGES: dict[str, StageEntry] = {
    "normalize": StageEntry(normalize_agent.NormalizeStage.sources, normalize_agent.build),
    "dedup": StageEntry(dedup_agent.DedupStage.sources, dedup_agent.build),
    "allocate": StageEntry(allocate_agent.AllocateStage.sources, allocate_agent.build),
    "notify": StageEntry(notify_agent.NotifyStage.sources, notify_agent.build),
}


def group_id(settings: Settings, stage: str) -> str:
    """The consumer group of a stage: every worker of one stage shares it."""
    return f"{settings.kafka.group_prefix}-{stage}"
