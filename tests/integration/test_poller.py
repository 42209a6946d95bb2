"""The poll loop against JD's contract (local server), the test broker and Postgres."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from ingest import metrics
from ingest.jd import Client
from ingest.poller import Cursors, ShopPoller
from ingest.publish import Publisher
from ingest.pull import ChannelError, ShopConfig
from runtime.kafka import make_producer
from runtime.settings import PollSettings, Settings
from schemas.base import SHANGHAI
from schemas.events import RawOrderReceived
from schemas.topics import RAW
from tests.channel_servers.base import serve
from tests.channel_servers.jd import JdRouter, generated_orders
from tests.stagekit import KafkaIO

T = TypeVar("T")
APP_KEY, SECRET, TOKEN = "8D2F0E6B1C4A4F9E8A7B6C5D4E3F2A1B", "c0ffee5e7a1b4c2d", "tok-9f3e2d1c"
NOW = datetime(2026, 3, 11, 4, 0, tzinfo=UTC)  # 12:00 in Beijing
START = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
POLL = PollSettings(overlap_s=120, first_lookback_s=3600, max_backoff_s=1)


def make_router(count: int = 150, clock: list[datetime] | None = None, **changes: Any
                ) -> JdRouter:
    """`count` orders modified every 6 minutes from START: all inside the first day's walk."""
    orders = generated_orders(count, START + timedelta(minutes=1), timedelta(minutes=6))
    now = clock or [NOW]
    return JdRouter(APP_KEY, SECRET, TOKEN, orders, now=lambda: now[0], **changes)


def with_poller(settings: Settings, engine: Engine, fake: JdRouter,
                work: Callable[[ShopPoller], Awaitable[T]], *, secret: str = SECRET,
                clock: datetime = NOW, sleeps: list[float] | None = None) -> T:
    assert settings.kafka.bootstrap
    publisher = Publisher(settings, make_producer(settings.kafka.bootstrap, "tests-poll"), engine,
                          metrics.build(CollectorRegistry()))
    with serve(fake.app()) as server:
        shop = ShopConfig("jd", "shanchuan", {"app_key": APP_KEY, "app_secret": secret,
                                              "access_token": TOKEN},
                          {"base_url": f"{server.url}/routerjson"})

        async def record_sleep(seconds: float) -> None:
            (sleeps if sleeps is not None else []).append(seconds)

        async def main() -> T:
            async with aiohttp.ClientSession() as session:
                poller = ShopPoller(shop, Client(shop, session, lambda: clock), publisher,
                                    Cursors(engine), POLL, lambda: clock, sleep=record_sleep)
                return await work(poller)

        return asyncio.run(main())


def produced(settings: Settings, expect: int) -> list[RawOrderReceived]:
    records = KafkaIO(settings).read(RAW, expect, timeout=5 if expect == 0 else 20)
    return [RawOrderReceived.model_validate_json(r.value or b"") for r in records]


def cursor(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT position, orders_seen, last_error FROM poll_cursors "
                                "WHERE channel = 'jd' AND shop = 'shanchuan'")).mappings().first()
    return dict(row) if row else None


def test_a_walk_produces_every_order_and_moves_the_cursor_to_now(
    settings: Settings, engine: Engine
) -> None:
    fake = make_router()
    report = with_poller(settings, engine, fake, lambda p: p.run_once(since=START))
    assert report.orders == 150 and report.pages == 2  # 100 + 50
    envelopes = produced(settings, 150)
    assert sorted(e.native_id for e in envelopes) == sorted(str(320000000000 + i)
                                                            for i in range(150))
    assert {e.transport for e in envelopes} == {"poll"}
    assert len({e.delivery_id for e in envelopes}) == 150
    saved = cursor(engine)
    assert saved is not None and saved["position"] == NOW and saved["orders_seen"] == 150


def test_a_restart_resumes_from_the_cursor_with_the_overlap_only(
    settings: Settings, engine: Engine
) -> None:
    server_clock = [NOW]
    fake = make_router(clock=server_clock)
    with_poller(settings, engine, fake, lambda p: p.run_once(since=START))
    fake.calls.clear()
    later = server_clock[0] = NOW + timedelta(minutes=30)
    report = with_poller(settings, engine, fake, lambda p: p.run_once(), clock=later)
    searched = [c for c in fake.calls if "start_date" in c]
    assert searched and searched[0]["start_date"] == (NOW - timedelta(seconds=120)).astimezone(
        SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    assert report.orders == 0  # nothing changed since: no gap, nothing read twice but overlap
    saved = cursor(engine)
    assert saved is not None and saved["position"] == later


def test_throttling_backs_off_and_the_walk_still_completes(
    settings: Settings, engine: Engine
) -> None:
    fake = make_router(count=20, throttle_next=2)
    sleeps: list[float] = []
    report = with_poller(settings, engine, fake, lambda p: p.run_once(since=START),
                         sleeps=sleeps)
    assert report.orders == 20
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)


def test_a_refused_credential_stops_the_shop_and_is_kept_for_the_operator(
    settings: Settings, engine: Engine
) -> None:
    fake = make_router(count=5)
    with pytest.raises(ChannelError):
        with_poller(settings, engine, fake, lambda p: p.run_once(since=START),
                    secret="wrong-secret")
    saved = cursor(engine)
    assert saved is not None and saved["last_error"]
    assert "wrong-secret" not in saved["last_error"]
    assert produced(settings, 0) == []


def test_pushed_ids_are_fetched_in_full_and_forgotten(settings: Settings, engine: Engine
                                                      ) -> None:
    fake = make_router(count=3)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO fetch_requests (channel, shop, native_id) VALUES "
                          "('jd', 'shanchuan', '320000000001'), ('jd', 'shanchuan', '999')"))
    count = with_poller(settings, engine, fake, lambda p: p.fetch_requested())
    assert count == 1
    envelopes = produced(settings, 1)
    assert [e.native_id for e in envelopes] == ["320000000001"]
    assert json.loads(envelopes[0].model_dump_json())["payload"]["orderId"] == "320000000001"
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM fetch_requests")).scalar()
    assert left == 0
