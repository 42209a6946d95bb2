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


def test_orderhub_producers_put_a_key_on_the_partition_faust_stages_would(
    settings: Settings,
) -> None:
    """One order's status messages come from ingest/CLI (confluent) and stages (aiokafka)."""
    from aiokafka.partitioner import DefaultPartitioner

    topic = RAW.full_name(settings.kafka.topic_prefix)
    keys = [f"taobao:shop-{i}:{3705000000000000000 + i}" for i in range(60)]
    produce_all(make_producer(settings.kafka.bootstrap or "", "t"), settings,
                [(topic, k, b"{}") for k in keys])
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "pt",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.kafka.partitions)])
    landed: dict[str, int] = {}
    while len(landed) < len(keys):
        msg = consumer.poll(5.0)
        assert msg is not None, f"only {len(landed)} of {len(keys)} messages read back"
        landed[(msg.key() or b"").decode()] = msg.partition() or 0
    consumer.close()

    partitions = list(range(settings.kafka.partitions))
    faust_would = {k: DefaultPartitioner()(k.encode(), partitions, partitions) for k in keys}
    assert landed == faust_would
    assert len(set(landed.values())) > 1
