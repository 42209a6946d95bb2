"""faust's aiokafka consumer with a configurable fetch wait, and batches without faust's
per-event stream machinery (`ready_batches`).

faust-streaming 0.15 creates its worker consumer with `fetch_max_wait_ms=1500` and offers no
setting for it. A broker may hold a Fetch for that long before answering with data that arrived
meanwhile; Tansu 0.6.0 does (`python -m bench.fetch_wait`: an idle consumer saw a new message
after 272 ms at the median and 691 ms at worst with 1,500 ms, 2 ms and 10 ms with 10 ms). With
four stages in a row that wait alone put p99 latency past a second, so the stage workers set
`ORDERHUB_KAFKA__FETCH_MAX_WAIT_MS` (default 20) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiokafka
import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer


def with_fetch_wait(app: faust.App, fetch_max_wait_ms: int) -> None:
    """Make the app's worker consumer long-poll at most `fetch_max_wait_ms` (before it starts)."""

    class Thread(AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka 0.14 keeps the argument here and hands it to its Fetcher in start().
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class WaitingConsumer(Consumer):
        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return Thread(self, loop=self.loop, beacon=self.beacon)

    # On this app's transport instance only; faust's class keeps its own consumer.
    app.transport.Consumer = WaitingConsumer  # type: ignore[misc]


async def ready_batches(
    app: faust.App, stream: Any, max_: int, within: float
) -> AsyncIterator[list[Any]]:
    """Batches of up to `max_` events taken straight from the stream's channel queue.

    What faust's `Stream.take_events` does, without its per-event machinery. `take_events`
    drains the stream in a background task that, for every event, yields to the event loop,
    calls sensors, runs a processor coroutine and appends to a buffer; it then acks each event
    with another coroutine. It also releases a batch only when `within` has passed since the
    last release or `max_` events are in, so a lone order waits out the whole window.

    Here:
    - a batch starts with the first event that arrives;
    - it takes every event already in the queue;
    - if that is fewer than `max_`, it waits until `within` after the first event and takes
      again.

    With `within=0` a batch is whatever arrived while the last one was processed. That is
    small when traffic is light and up to `max_` under load.

    The bookkeeping is kept:
    - events from before a rebalance (another consumer generation), or taken while flow control
      is suspended, are acked without being yielded, as the stream would skip them;
    - yielded events are tracked as unacked, so a rebalance waits for them;
    - they are acked, so their offsets become committable, only when the caller asks for the
      next batch, that is, after it has finished with this one.

    The queue's own `get` and `get_nowait` are used, so faust's back-pressure (pausing a
    partition whose queue is full) still works. faust's sensors (its monitor) are not called;
    the stage has its own metrics.
    """
    queue = stream.channel.queue
    consumer = app.consumer
    add_unacked = consumer.unacked.add
    acking = app.topics.acking_topics
    flow = app.flow_control
    loop = asyncio.get_running_loop()
    while not stream.should_stop:
        events = [await queue.get()]
        deadline = loop.time() + within
        while True:
            while len(events) < max_ and not queue.empty():
                events.append(queue.get_nowait())
            remaining = deadline - loop.time()
            if len(events) >= max_ or remaining <= 0:
                break
            await asyncio.sleep(remaining)
        generation = app.consumer_generation_id
        live = []
        for event in events:
            message = event.message
            if not flow.is_active() or message.generation_id != generation:
                event.ack()  # what the stream does with a value it skips
                continue
            if message.topic in acking and not message.tracked:
                message.tracked = True
                add_unacked(message)
            live.append(event)
        if not live:
            continue
        yield live
        # Not in a `finally`, unlike take_events: a batch whose processing raised, or whose
        # generator was closed, is never acked, so its offsets cannot be committed.
        for event in live:
            event.ack()
