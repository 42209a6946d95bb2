"""The poll process's relay of TMC and PDD frames to the real broker and Postgres."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from ingest import metrics
from ingest.pdd import Messages as PddMessages
from ingest.poller import _relay_messages
from ingest.publish import Publisher, Transport
from ingest.pull import ShopConfig, utc_now
from ingest.taobao import Messages as TmcMessages
from runtime.kafka import make_producer
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.errors import TransientError
from schemas.events import DeadLetter, OrderStatusChanged
from schemas.order import OrderStatus
from schemas.topics import DLQ, STATUS
from tests.channel_servers.base import RunningServer, serve
from tests.channel_servers.pdd import FakePdd
from tests.channel_servers.taobao import FakeTop
from tests.stagekit import KafkaIO

APP_KEY, SECRET, SESSION = "23018966", "e8792cf243614eb3c7c16b8c05d6135a", "6100e2Z9fc57e8ed8"
TMALL = "shanchuan.tmall.com"
NOW = datetime(2026, 3, 12, 9, 0, tzinfo=SHANGHAI)
PAID_TID, CREATED_TID = "4087312065519582261", "4091558230174490638"
MALL = "pdd-mall-889123"
SN = "251215-481803633911509"
BIG_ID = 9007199254740993


def publisher(settings: Settings, engine: Engine) -> Publisher:
    assert settings.kafka.bootstrap
    return Publisher(settings, make_producer(settings.kafka.bootstrap, "tests"), engine,
                     metrics.build(CollectorRegistry()))


class DeadLetterQueueDown(Publisher):
    def reject(self, channel: str, transport: Transport, source: str, reason: str,
               original: bytes) -> None:
        raise TransientError("orders.dlq: broker unreachable")


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def status_changes(io: KafkaIO, expect: int) -> list[OrderStatusChanged]:
    return [OrderStatusChanged.model_validate_json(r.value or b"")
            for r in io.read(STATUS, expect, timeout=5 if expect == 0 else 15)]


def dead_letters(io: KafkaIO, expect: int) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(r.value or b"") for r in io.read(DLQ, expect)]


# -- Taobao TMC ----------------------------------------------------------------------------------

def tmc() -> FakeTop:
    server = FakeTop(APP_KEY, SECRET, SESSION, [], now=lambda: NOW)
    server.publish(101, "taobao_trade_TradeBuyerPay",
                   {"tid": int(PAID_TID), "payment": "214.00", "buyer_nick": "t**1"})
    server.publish(102, "taobao_trade_TradeCreate", {"tid": int(CREATED_TID)})
    server.publish(103, "taobao_trade_TradeCreate", "{broken")
    return server


def relay_tmc(server: FakeTop, publishers: list[Publisher]) -> None:
    async def main(url: str) -> None:
        shop = ShopConfig("taobao", TMALL, {"app_key": APP_KEY, "app_secret": SECRET,
                                            "session": SESSION},
                          {"base_url": f"{url}/router/rest"})
        async with aiohttp.ClientSession() as http:
            for relay in publishers:
                await _relay_messages(relay, "taobao", TmcMessages(shop, http, lambda: NOW))

    with serve(server.app()) as running:
        asyncio.run(main(running.url))


def test_tmc_frames_are_produced_dead_lettered_and_confirmed_once_however_often_resent(
    settings: Settings, engine: Engine
) -> None:
    server = tmc()
    relay = publisher(settings, engine)
    relay_tmc(server, [relay])
    assert server.confirmed == {"101", "102", "103"}
    server.confirmed.clear()  # TMC resends all three, as after a lost confirm
    relay_tmc(server, [relay])

    assert server.confirmed == {"101", "102", "103"}
    assert len(server.calls_of("taobao.tmc.messages.confirm")) == 2
    io = KafkaIO(settings)
    (paid,) = status_changes(io, 1)
    assert (paid.order_id, paid.status) == (f"TB{PAID_TID}", OrderStatus.PAID)
    assert rows(engine, "SELECT channel, shop, native_id FROM fetch_requests") == [
        ("taobao", TMALL, CREATED_TID)]
    broken = json.dumps(server.queue[2], ensure_ascii=False).encode()
    (letter,) = dead_letters(io, 1)
    assert (letter.key, letter.topic) == ("taobao:tmc:103", "webhook:taobao")
    assert letter.message.startswith("content: not JSON")
    assert base64.b64decode(letter.original) == broken
    assert rows(engine, "SELECT key, message, original FROM dead_letters") == [
        ("taobao:tmc:103", letter.message, broken)]
    assert sorted(rows(engine, "SELECT delivery_id FROM push_deliveries")) == [
        ("taobao:tmc:101",), ("taobao:tmc:102",), ("taobao:tmc:103",)]


def test_no_tmc_frame_is_confirmed_until_the_whole_batch_is_produced(
    settings: Settings, engine: Engine
) -> None:
    server = tmc()
    failing = DeadLetterQueueDown(settings, make_producer(settings.kafka.bootstrap or "", "t"),
                                  engine, metrics.build(CollectorRegistry()))
    with pytest.raises(TransientError, match="orders.dlq"):
        relay_tmc(server, [failing])
    assert server.confirmed == set()
    assert server.calls_of("taobao.tmc.messages.confirm") == []
    assert rows(engine, "SELECT delivery_id FROM push_deliveries WHERE delivery_id = "
                        "'taobao:tmc:103'") == []

    relay_tmc(server, [publisher(settings, engine)])  # the next poll, with the broker back
    assert server.confirmed == {"101", "102", "103"}
    io = KafkaIO(settings)
    assert len(status_changes(io, 1)) == 1
    assert [d.key for d in dead_letters(io, 1)] == ["taobao:tmc:103"]


# -- Pinduoduo's message WebSocket ---------------------------------------------------------------

def common(frame_id: int, topic: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"id": frame_id, "commandType": "Common", "time": 1765765269000,
            "sendTime": 1765765268123,
            "message": {"type": topic, "mallID": 889123,
                        "content": json.dumps({"mall_id": 889123, **content})}}


def queue_pdd(fake: FakePdd) -> None:
    fake.queue(common(BIG_ID, "pdd_trade_TradeConfirmed", {"tid": SN}))
    fake.queue(common(21, "pdd_trade_TradeConfirmed", {"tid": "not-an-order-sn"}))


def relay_pdd(server: RunningServer, relay: Publisher) -> None:
    shop = ShopConfig("pdd", MALL, {"client_id": "pdd-app-1", "client_secret": "pdd-secret-1"},
                      {"ws_url": server.url.replace("http", "ws", 1), "wait_s": "1"})

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            source = PddMessages(shop, session, utc_now)
            try:
                await _relay_messages(relay, "pdd", source)
            finally:
                await source.close()  # the closing handshake: the fake has read every Ack

    asyncio.run(main())


def test_pdd_frames_are_produced_dead_lettered_and_acked_once_however_often_resent(
    settings: Settings, engine: Engine
) -> None:
    fake = FakePdd([])
    queue_pdd(fake)
    broken = fake.frames["21"].encode()
    relay = publisher(settings, engine)
    with serve(fake.app()) as server:
        relay_pdd(server, relay)
        assert fake.frames == {}
        queue_pdd(fake)  # PDD resends both, as after a lost Ack
        relay_pdd(server, relay)

    assert [a["id"] for a in fake.acks] == [BIG_ID, 21, BIG_ID, 21]
    io = KafkaIO(settings)
    (paid,) = status_changes(io, 1)
    assert (paid.order_id, paid.status) == (f"PDD{SN}", OrderStatus.PAID)
    assert rows(engine, "SELECT channel, shop, native_id FROM fetch_requests") == [
        ("pdd", MALL, SN)]
    (letter,) = dead_letters(io, 1)
    assert (letter.key, letter.topic) == ("pdd:msg:21", "webhook:pdd")
    assert "content.tid" in letter.message
    assert base64.b64decode(letter.original) == broken
    assert rows(engine, "SELECT key, message, original FROM dead_letters") == [
        ("pdd:msg:21", letter.message, broken)]
    assert sorted(rows(engine, "SELECT delivery_id FROM push_deliveries")) == [
        ("pdd:msg:21",), (f"pdd:msg:{BIG_ID}",)]

