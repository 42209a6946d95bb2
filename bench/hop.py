"""A bare aiokafka consume → produce hop in its own process: the broker's floor for a stage.

`python -m bench.hop --bootstrap H:P --sources A,B --sink C --group G` copies every message of
the sources to the sink until SIGTERM: `getmany` batches of at most --batch-size, every send
awaited (acks=all), then a commit. No stage code, no SQL. Unlike `bench.passthrough` it runs
as a process beside the stage workers, so several can share a group, and it never stops by
itself, so it can be fed at a steady rate.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.workers import PR_SET_PDEATHSIG, REPO

FETCH_MAX_WAIT_MS = 500
"""aiokafka's default; faust's consumer asks for 1500 (faust/transport/drivers/aiokafka.py)."""


async def hop(
    bootstrap: str, sources: Sequence[str], sink: str, *, group: str, batch_size: int,
    session_timeout_s: float, stop: asyncio.Event, fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
) -> None:
    """Copy batches from the sources to the sink until `stop` is set."""
    consumer = AIOKafkaConsumer(
        *sources, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=1000, fetch_max_wait_ms=fetch_max_wait_ms,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await consumer.start()
        try:
            while not stop.is_set():
                await _copy_batch(consumer, producer, sink, batch_size)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


async def _copy_batch(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, sink: str, batch_size: int
) -> None:
    batches = await consumer.getmany(timeout_ms=200, max_records=batch_size)
    records = [r for part in batches.values() for r in part]
    if not records:
        return
    pending = [await producer.send(sink, key=r.key, value=r.value) for r in records]
    await asyncio.gather(*pending)
    await consumer.commit()


def spawn_hop(
    bootstrap: str, sources: Sequence[str], sink: str, *, group: str, batch_size: int,
    session_timeout_s: float, log_path: Path, fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
) -> subprocess.Popen[bytes]:
    """This module as a child process; stop it with `bench.workers.stop` (SIGTERM)."""
    cmd = [sys.executable, "-m", "bench.hop", "--bootstrap", bootstrap, "--sources",
           ",".join(sources), "--sink", sink, "--group", group, "--batch-size", str(batch_size),
           "--session-timeout-s", str(session_timeout_s),
           "--fetch-max-wait-ms", str(fetch_max_wait_ms)]
    with log_path.open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await hop(args.bootstrap, args.sources.split(","), args.sink, group=args.group,
              batch_size=args.batch_size, session_timeout_s=args.session_timeout_s, stop=stop,
              fetch_max_wait_ms=args.fetch_max_wait_ms)


def main(argv: Sequence[str] | None = None) -> int:
    # Like the stage workers (bench.workers.spawn): no hop outlives an interrupted benchmark.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    p = argparse.ArgumentParser(prog="python -m bench.hop", description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--sources", required=True, help="comma-separated topics")
    p.add_argument("--sink", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--session-timeout-s", type=float, default=6.0)
    p.add_argument("--fetch-max-wait-ms", type=int, default=FETCH_MAX_WAIT_MS)
    asyncio.run(_main(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
