"""Baseline (a): a bare aiokafka consume → produce loop on the same broker; no stage, no SQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.measure import Timing
from bench.workers import BenchTimeout, Deadline


async def passthrough(
    bootstrap: str, source: str, sink: str, *, group: str, expected: int, batch_size: int,
    session_timeout_s: float, deadline: Deadline, producer_settings: dict[str, Any],
) -> Timing:
    """Copy `expected` messages from source to sink in getmany batches, awaiting every delivery
    (acks=all) and committing after each batch; timed from before the clients start.
    `producer_settings`: the stages' producer batch size, linger and compression, so the
    baseline is the same client tuned the same way, without the framework."""
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_settings)
    await producer.start()
    try:
        await consumer.start()
        try:
            pump = _pump(consumer, producer, sink, expected, batch_size, started)
            return await asyncio.wait_for(pump, deadline.remaining())
        except TimeoutError as e:
            raise BenchTimeout(deadline.message()) from e
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


async def _pump(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, sink: str, expected: int,
    batch_size: int, started: float,
) -> Timing:
    done = 0
    first: tuple[float, int] | None = None
    while done < expected:
        batches = await consumer.getmany(timeout_ms=200, max_records=batch_size)
        records = [r for part in batches.values() for r in part]
        if not records:
            continue
        pending = [await producer.send(sink, key=r.key, value=r.value) for r in records]
        await asyncio.gather(*pending)
        await consumer.commit()
        done += len(records)
        if first is None:
            first = (time.perf_counter() - started, done)
    end = time.perf_counter() - started
    assert first is not None
    return Timing(done, first[0], first[1], end, end)
