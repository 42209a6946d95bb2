"""Log ends and group lag read so that they are right on Tansu 0.6.0 (ends from Fetch).

Tansu 0.6.0 answers ListOffsets(latest) with the base offset of the partition's last record
batch + 1, so `get_watermark_offsets` / `end_offsets` under-count whenever that batch holds more
than one record. A Fetch response carries the true high watermark, so ends are read from one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as ConfluentPartition

from runtime.settings import Settings
from runtime.stages import STAGES, group_id

Ends = dict[tuple[str, int], int]


def log_ends(bootstrap: str, topics: Iterable[str], partitions: int, timeout: float = 30) -> Ends:
    """Each partition's high watermark as a Fetch response reports it."""
    tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
    return asyncio.run(asyncio.wait_for(_fetched_ends(bootstrap, tps), timeout))


async def _fetched_ends(bootstrap: str, tps: list[TopicPartition]) -> Ends:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=1)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while any(consumer.highwater(tp) is None for tp in tps):
            await consumer.getmany(timeout_ms=200)
        return {(tp.topic, tp.partition): int(consumer.highwater(tp)) for tp in tps}
    finally:
        await consumer.stop()


def stage_groups(settings: Settings, names: Iterable[str]) -> dict[str, list[str]]:
    """Consumer group → input topics of the named stages."""
    prefix, wanted = settings.kafka.topic_prefix, set(names)
    return {group_id(settings, n): [s.full_name(prefix) for s in entry.sources]
            for n, entry in STAGES.items() if n in wanted}


def group_lag(bootstrap: str, groups: Mapping[str, Iterable[str]], ends: Ends) -> int:
    """Messages below the given ends that the groups have not committed yet."""
    behind = 0
    for group, topics in groups.items():
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                             "enable.auto.commit": False})
        try:
            tps = [ConfluentPartition(t, p) for (t, p) in ends if t in set(topics)]
            for tp in consumer.committed(tps, timeout=15):
                behind += max(ends[(tp.topic, tp.partition)] - max(tp.offset, 0), 0)
        finally:
            consumer.close()
    return behind
