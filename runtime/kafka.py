"""Kafka plumbing on confluent-kafka: topic creation, the ingest producer, lag for drain."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
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
    """An idempotent producer with acks=all: retries never duplicate or reorder a partition.

    Keys are hashed with murmur2 like the Java client and aiokafka (the faust stages), not
    librdkafka's default CRC32: one order's messages on `orders.status` come from ingest, the
    CLI and the stages, and must all land on the same partition to keep their order.
    """
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "partitioner": "murmur2_random",
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


def log_ends(bootstrap: str, tps: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The true end offset of each partition, as the fetch path reports it.

    Tansu 0.6.0 answers ListOffsets(latest) with the base offset of the partition's last record
    batch + 1, not the log end, so watermark queries under-count. Reading from that point to the
    partition-EOF event gives the real end on Tansu and costs one message on Apache Kafka.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "orderhub-end-probe",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        starts = [TopicPartition(t, p, max(_listed_end(consumer, t, p) - 1, 0)) for t, p in tps]
        consumer.assign(starts)
        return _read_to_eof(consumer, len(starts))
    except KafkaException as e:
        raise TransientError(f"cannot read log ends from {bootstrap}: {e}") from e
    finally:
        consumer.close()


def _listed_end(consumer: Consumer, topic: str, partition: int) -> int:
    tp = TopicPartition(topic, partition)
    return int(consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S, cached=False)[1])


def _read_to_eof(consumer: Consumer, count: int) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(ends) < count:
        if time.monotonic() > deadline:
            raise TransientError(f"log ends unknown for {count - len(ends)} partition(s)")
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        error = msg.error()
        if error is None:
            continue
        if error.code() != KafkaError._PARTITION_EOF:
            raise TransientError(f"reading log ends: {error}")
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        ends[(topic, partition)] = offset
    return ends


def group_lag(
    bootstrap: str, groups: Mapping[str, Iterable[str]], partitions: int
) -> list[PartitionLag]:
    """Committed offset vs log end for each (group, topic, partition), read in the given order.

    Groups are read in pipeline order: a stage commits only after its outputs are delivered,
    so once a stage shows no lag its outputs are already counted in the next topic's end.
    """
    result: list[PartitionLag] = []
    for group, topics in groups.items():
        tps = [(t, p) for t in topics for p in range(partitions)]
        committed = committed_offsets(bootstrap, group, tps)
        ends = log_ends(bootstrap, tps)
        result += [PartitionLag(group, t, p, committed[(t, p)], ends[(t, p)]) for t, p in tps]
    return result


def committed_offsets(bootstrap: str, group: str, tps: Sequence[tuple[str, int]]
               ) -> dict[tuple[str, int], int]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=TIMEOUT_S)
        return {(tp.topic, tp.partition): tp.offset for tp in found}
    except KafkaException as e:
        raise TransientError(f"cannot read offsets of {group} from {bootstrap}: {e}") from e
    finally:
        consumer.close()
