"""`python -m bench.fetch_wait [--messages 15]`: how long a waiting consumer takes to see a new
message on a fresh Tansu broker, for several `fetch_max_wait_ms` (faust's stages use 1500).

One partition, one aiokafka consumer already joined and idle, messages sent one at a time at
random 0.3–1.2 s intervals; the delay is the consumer's receive time − the send time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.services import broker
from runtime.kafka import create_topics
from schemas.topics import RAW

WAITS_MS = (10, 100, 500, 1500)


async def delays(bootstrap: str, topic: str, wait_ms: int, n: int) -> list[float]:
    """Seconds from send to receive of `n` messages, sent while the consumer is idle."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"wait-{wait_ms}",
                                auto_offset_reset="latest", fetch_max_wait_ms=wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        await asyncio.sleep(4)  # joined and fetching before the first send
        seen: list[float] = []
        reader = asyncio.create_task(_read(consumer, seen, n))
        for _ in range(n):
            await asyncio.sleep(random.uniform(0.3, 1.2))
            await producer.send_and_wait(topic, str(time.time()).encode())
        await asyncio.wait_for(reader, 30)
        return sorted(seen)
    finally:
        await consumer.stop()
        await producer.stop()


async def _read(consumer: AIOKafkaConsumer, seen: list[float], n: int) -> None:
    while len(seen) < n:
        for part in (await consumer.getmany(timeout_ms=100)).values():
            seen += [time.time() - float(m.value.decode()) for m in part]


async def _all(bootstrap: str, n: int) -> list[str]:
    lines = ["| fetch_max_wait_ms | p50 ms | max ms |", "|---:|---:|---:|"]
    for wait in WAITS_MS:
        create_topics(bootstrap, f"wait{wait}.", 1, 1, [RAW])
        seen = await delays(bootstrap, RAW.full_name(f"wait{wait}."), wait, n)
        lines.append(f"| {wait} | {statistics.median(seen) * 1000:.0f} | {seen[-1] * 1000:.0f} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fetch_wait", description=__doc__)
    p.add_argument("--messages", type=int, default=15, help="per setting (default 15)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="orderhub-fetch-wait-") as scratch, \
            broker(Path(scratch) / "broker.log") as bootstrap:
        print("\n".join(asyncio.run(_all(bootstrap, args.messages))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
