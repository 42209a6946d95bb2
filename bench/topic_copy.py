"""Copy topics message for message (same partition, key and value), so runs start equal."""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from bench.offsets import log_ends
from bench.workload import ingest_producer
from schemas.errors import OrderhubError


def copy_topics(bootstrap: str, pairs: Mapping[str, str], partitions: int) -> int:
    """Copy each source topic to its target up to the source's end; returns messages copied.

    A partition's copy gets its messages in order into the same partition number, so a worker
    of the copy sees what a worker of the source would have, partition for partition.
    """
    ends = log_ends(bootstrap, list(pairs), partitions)
    left = {tp for tp, end in ends.items() if end > 0}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-copier",
                         "enable.auto.commit": False})
    errors: list[KafkaError] = []
    copied = 0
    try:
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in left])
        with ingest_producer(bootstrap) as producer:
            while left:
                for msg in consumer.consume(1000, timeout=1.0):
                    tp = _position(msg)
                    _produce(producer, msg, pairs[tp[0]], errors)
                    copied += 1
                    if (msg.offset() or 0) + 1 >= ends[tp]:
                        left.discard(tp)
            if producer.flush(60) or errors:
                raise OrderhubError(f"copy: not every message acknowledged: {errors[:1]}")
    finally:
        consumer.close()
    return copied


def _position(msg: Message) -> tuple[str, int]:
    if msg.error() is not None:
        raise OrderhubError(f"copying {msg.topic()}: {msg.error()}")
    return msg.topic() or "", msg.partition() or 0


def _produce(producer: Producer, msg: Message, topic: str, errors: list[KafkaError]) -> None:
    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    while True:
        try:
            producer.produce(topic, key=msg.key(), value=msg.value(),
                             partition=msg.partition() or 0, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)
