from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import Message

from bench.hop import spawn_hop
from bench.offsets import group_lag, log_ends
from bench.pipeline import first_stamps
from bench.topic_copy import copy_topics
from bench.workers import Deadline, stop
from bench.workload import demo_orders, ingest_producer, produce_paced
from runtime.kafka import create_topics
from schemas.topics import NORMALIZED, RAW

PARTITIONS = 6


def _key(msg: Message) -> str:
    return (msg.key() or b"").decode()


def _topics(broker: str) -> tuple[str, str]:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    create_topics(broker, prefix, PARTITIONS, 1, (RAW, NORMALIZED))
    return RAW.full_name(prefix), NORMALIZED.full_name(prefix)


def test_paced_produce_holds_the_rate_and_stamps_each_tick(broker: str) -> None:
    source, _sink = _topics(broker)
    with ingest_producer(broker) as producer:
        paced = produce_paced(producer, source, demo_orders(300), rate=1000)
    assert 0.28 <= paced.produced_s < 1.0
    assert 300 <= paced.rate <= 1100
    assert len(paced.by_key) == len(paced.by_order) == 300
    assert len(set(paced.by_key.values())) >= 20  # about 10 orders per 10 ms tick
    assert sum(log_ends(broker, [source], PARTITIONS).values()) == 300


def test_a_burst_is_not_paced(broker: str) -> None:
    source, _sink = _topics(broker)
    with ingest_producer(broker) as producer:
        paced = produce_paced(producer, source, demo_orders(600), rate=None)
    assert paced.produced_s < 0.5
    assert len(set(paced.by_key.values())) == 3  # chunks of 250 + 250 + 100


def test_copied_topics_hold_the_same_keys_in_the_same_partitions(broker: str) -> None:
    source, target = _topics(broker)
    with ingest_producer(broker) as producer:
        paced = produce_paced(producer, source, demo_orders(200), rate=None)
    assert copy_topics(broker, {source: target}, PARTITIONS) == 200
    ends = log_ends(broker, [source, target], PARTITIONS)
    assert [ends[(source, p)] for p in range(6)] == [ends[(target, p)] for p in range(6)]
    stamps = first_stamps(broker, target, PARTITIONS, Deadline(30, "read"), _key)
    assert set(stamps) == set(paced.by_key)


def test_the_hop_copies_everything_and_commits(broker: str, tmp_path: Path) -> None:
    source, sink = _topics(broker)
    with ingest_producer(broker) as producer:
        produce_paced(producer, source, demo_orders(300), rate=None)
    group = f"hop-{uuid.uuid4().hex[:8]}"
    hop = spawn_hop(broker, [source], sink, group=group, batch_size=100, session_timeout_s=6,
                    log_path=tmp_path / "hop.log")
    try:
        ends = log_ends(broker, [source], PARTITIONS)
        deadline = Deadline(60, "hop")
        while group_lag(broker, {group: [source]}, ends):
            deadline.check()
            assert hop.poll() is None, (tmp_path / "hop.log").read_text()
            time.sleep(0.1)
    finally:
        stop(hop)
    assert hop.returncode == 0
    assert sum(log_ends(broker, [sink], PARTITIONS).values()) == 300
