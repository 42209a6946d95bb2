"""Kafka plumbing on confluent-kafka: topic creation, the ingest producer, lag for drain."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # untyped re-export

from schemas.errors import TransientError
from schemas.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)
TIMEOUT_S = 15.0


def create_topics(
    bootstrap: str, prefix: str, partitions: int, replication: int,
    specs: Iterable[TopicSpec] = TOPICS,
) -> list[str]:
    """Create every registry topic that is missing; returns the names it created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = [NewTopic(s.full_name(prefix), partitions, replication) for s in specs]
    created: list[str] = []
    for name, future in admin.create_topics(wanted, request_timeout=TIMEOUT_S).items():
        try:
            future.result(timeout=TIMEOUT_S)
            created.append(name)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TransientError(f"cannot create topic {name} on {bootstrap}: {e}") from e
    return created


def make_producer(bootstrap: str, client_id: str) -> Producer:
    """An idempotent producer with acks=all: retries never duplicate or reorder a partition."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )


@dataclass(frozen=True)
class PartitionLag:
    """How far one consumer group is behind on one partition."""

    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - max(self.committed, 0), 0)


def group_lag(
    bootstrap: str, groups: Mapping[str, Iterable[str]], partitions: int
) -> list[PartitionLag]:
    """Committed offset vs log end for each (group, topic, partition), read in the given order.

    Groups are read in pipeline order: a stage commits only after its outputs are delivered,
    so once a stage shows no lag its outputs are already counted in the next topic's end.
    """
    result: list[PartitionLag] = []
    for group, topics in groups.items():
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        try:
            tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
            committed = consumer.committed(tps, timeout=TIMEOUT_S)
            for tp in committed:
                _, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S, cached=False)
                result.append(PartitionLag(group, tp.topic, tp.partition, tp.offset, high))
        except KafkaException as e:
            raise TransientError(f"cannot read offsets of {group} from {bootstrap}: {e}") from e
        finally:
            consumer.close()
    return result
