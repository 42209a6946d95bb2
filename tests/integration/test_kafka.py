from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from ingest.agent import produce_all
from runtime.kafka import create_topics, group_lag, log_ends, make_producer
from runtime.settings import Settings
from schemas.topics import RAW


def _fill(settings: Settings, n: int) -> str:
    assert settings.kafka.bootstrap
    topic = RAW.full_name(settings.kafka.topic_prefix)
    producer = make_producer(settings.kafka.bootstrap, "t")
    produce_all(producer, settings, [(topic, str(i), b"x" * 200) for i in range(n)])
    return topic


def test_log_ends_count_every_message_even_when_they_arrive_in_big_batches(
    settings: Settings,
) -> None:
    topic = _fill(settings, 600)
    assert settings.kafka.bootstrap
    ends = log_ends(settings.kafka.bootstrap, [(topic, p) for p in range(6)])
    assert sum(ends.values()) == 600


def test_group_lag_sees_messages_past_a_commit_inside_the_last_batch(settings: Settings) -> None:
    # Tansu's ListOffsets(latest) answers "last batch base + 1": a commit at offset 1 must not
    # look like "caught up" when a whole batch follows it.
    topic = _fill(settings, 600)
    assert settings.kafka.bootstrap
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "g-lag",
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, p, 1) for p in range(6)], asynchronous=False)
    consumer.close()
    lag = group_lag(settings.kafka.bootstrap, {"g-lag": [topic]}, 6)
    assert sum(p.lag for p in lag) == 600 - 6


def test_creating_topics_twice_creates_nothing_the_second_time(settings: Settings) -> None:
    assert settings.kafka.bootstrap
    k = settings.kafka
    assert create_topics(k.bootstrap or "", k.topic_prefix, k.partitions, 1) == []
