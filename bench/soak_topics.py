"""What the broker holds at the end of a soak: messages per topic and their typical size."""

from __future__ import annotations

from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bench.offsets import log_ends
from runtime.settings import Settings
from schemas.errors import OrderhubError
from schemas.topics import TOPICS

SAMPLE = 500
TIMEOUT_S = 15.0


def topic_profile(bootstrap: str, settings: Settings) -> dict[str, dict[str, Any]]:
    """Per registry topic: messages held (all partitions) and the mean key + value size of the
    first messages of partition 0 (uncompressed, as a consumer gets them). Tansu's memory
    storage keeps every message for the broker's lifetime, so these explain its RSS."""
    prefix, parts = settings.kafka.topic_prefix, settings.kafka.partitions
    out: dict[str, dict[str, Any]] = {}
    for spec in TOPICS:
        name = spec.full_name(prefix)
        held = sum(log_ends(bootstrap, [name], parts).values())
        sizes = _first_sizes(bootstrap, name, min(SAMPLE, held)) if held else []
        out[spec.name] = {
            "messages": held,
            "mean_bytes": sum(sizes) / len(sizes) if sizes else None,
            "sampled": len(sizes),
        }
    return out


def _first_sizes(bootstrap: str, topic: str, wanted: int) -> list[int]:
    """Key + value bytes of up to `wanted` messages from the start of partition 0."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-soak-profile",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    sizes: list[int] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        while len(sizes) < wanted:
            msgs = consumer.consume(wanted - len(sizes), timeout=TIMEOUT_S)
            if not msgs:
                break  # partition 0 may hold fewer than `wanted`
            for msg in msgs:
                error = msg.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    return sizes
                if error is not None:
                    raise OrderhubError(f"reading {topic}: {error}")
                sizes.append(len(msg.value() or b"") + len(msg.key() or b""))
        return sizes
    finally:
        consumer.close()
