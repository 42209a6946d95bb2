"""faust's aiokafka consumer with a configurable fetch wait.

faust-streaming 0.15 creates its worker consumer with `fetch_max_wait_ms=1500` and offers no
setting for it. A broker may hold a Fetch for that long before answering with data that arrived
meanwhile; Tansu 0.6.0 does (`python -m bench.fetch_wait`: an idle consumer saw a new message
after 272 ms at the median and 691 ms at worst with 1,500 ms, 2 ms and 10 ms with 10 ms). With
four stages in a row that wait alone put p99 latency past a second, so the stage workers set
`ORDERHUB_KAFKA__FETCH_MAX_WAIT_MS` (default 20) instead.
"""

from __future__ import annotations

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
