from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest

from ingest.pdd import Client, Messages
from ingest.pull import ChannelError, Page, ShopConfig, Throttled, Window, utc_now
from normalize.pdd import map_order
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.errors import TransientError
from schemas.order import OrderStatus
from tests.channel_servers.base import RunningServer, serve
from tests.channel_servers.pdd import FakePdd, kick_from, spread

T = TypeVar("T")
START = datetime(2025, 12, 15, 10, 0, tzinfo=SHANGHAI)
WINDOW = Window(START, START + timedelta(minutes=30))
IN_WINDOW = 250  # three pages of 100
RATES = RateTable.from_mapping({})  # CNY needs no rate
SN = "251215-481803633911509"
BIG_ID = 9007199254740993


def orders() -> list[dict[str, Any]]:
    inside = spread(START, IN_WINDOW, timedelta(seconds=5))
    before = spread(START - timedelta(hours=1), 3, timedelta(minutes=1))
    after = spread(WINDOW.end + timedelta(seconds=1), 3, timedelta(minutes=1))
    for i, order in enumerate(before + after):
        order["order_sn"] = f"251214-{800000000000000 + i}"
    return inside + before + after


@pytest.fixture
def fake() -> FakePdd:
    return FakePdd(orders())


@pytest.fixture
def server(fake: FakePdd) -> Iterator[RunningServer]:
    with serve(fake.app()) as running:
        yield running


def shop(server: RunningServer, **credentials: str) -> ShopConfig:
    secrets = {"client_id": "pdd-app-1", "client_secret": "pdd-secret-1",
               "access_token": "pdd-token-1"} | credentials
    return ShopConfig("pdd", "pdd-mall-889123", secrets, {
        "base_url": f"{server.url}/api/router", "ws_url": server.url.replace("http", "ws", 1),
        "wait_s": "1"})


def run(config: ShopConfig, work: Callable[[Client], Awaitable[T]],
        clock: Callable[[], datetime] = utc_now) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await work(Client(config, session, clock))
    return asyncio.run(main())


async def walk(client: Client, window: Window = WINDOW) -> list[Page]:
    pages, token = [], None
    while True:
        page = await client.fetch(window, token)
        pages.append(page)
        if page.next is None:
            return pages
        token = page.next


def test_a_window_of_250_orders_is_read_from_the_last_page_back(fake: FakePdd,
                                                                server: RunningServer) -> None:
    pages = run(shop(server), walk)
    seen = [o["order_sn"] for page in pages for o in page.orders]
    assert set(seen) == {f"251215-{900000000000000 + i}" for i in range(IN_WINDOW)}
    assert [c["page"] for c in fake.calls] == ["1", "3", "2", "1"]
    assert [c["use_has_next"] for c in fake.calls] == ["false", "true", "true", "true"]
    first = fake.calls[0]
    assert (first["start_updated_at"], first["end_updated_at"]) == ("1765764000", "1765765800")
    assert (first["order_status"], first["refund_status"], first["is_lucky_flag"],
            first["page_size"], first["data_type"]) == ("5", "5", "0", "100", "JSON")


def test_every_pulled_order_is_one_the_mapper_accepts(server: RunningServer) -> None:
    pages = run(shop(server), walk)
    mapped = [map_order(o, shop="pdd-mall-889123", rates=RATES)
              for page in pages for o in page.orders]
    assert {o.status for o in mapped} >= {OrderStatus.PAID, OrderStatus.SHIPPED,
                                          OrderStatus.DELIVERED, OrderStatus.REFUNDED}


def test_an_order_updated_during_the_walk_hides_no_other(fake: FakePdd,
                                                         server: RunningServer) -> None:
    async def work(client: Client) -> set[str]:
        first = await client.fetch(WINDOW, None)
        # An order read on page 1 changes now and leaves the window: every later one shifts.
        fake.touch(first.orders[5]["order_sn"], datetime.now(SHANGHAI))
        seen = {o["order_sn"] for o in first.orders}
        token = first.next
        while token is not None:
            page = await client.fetch(WINDOW, token)
            seen |= {o["order_sn"] for o in page.orders}
            token = page.next
        return seen

    seen = run(shop(server), work)
    assert seen == {f"251215-{900000000000000 + i}" for i in range(IN_WINDOW)}


def test_a_forged_secret_is_a_channel_error(server: RunningServer) -> None:
    with pytest.raises(ChannelError) as caught:
        run(shop(server, client_secret="forged"), lambda c: c.fetch(WINDOW, None))
    assert caught.value.code == "20004"
    assert "forged" not in str(caught.value)


def test_a_window_of_31_minutes_is_refused_by_pdd(server: RunningServer) -> None:
    assert Client.max_window == timedelta(minutes=30)
    wide = Window(START, START + timedelta(minutes=31))
    with pytest.raises(ChannelError) as caught:
        run(shop(server), lambda c: c.fetch(wide, None))
    assert caught.value.code == "10000"
    assert "30分钟" in str(caught.value)


def test_throttling_raises_throttled_and_the_retry_is_answered(fake: FakePdd,
                                                               server: RunningServer) -> None:
    fake.throttle_next = 1

    async def work(client: Client) -> Page:
        with pytest.raises(Throttled) as caught:
            await client.fetch(WINDOW, None)
        assert "70031" in str(caught.value)
        return await client.fetch(WINDOW, None)

    assert len(run(shop(server), work).orders) == 100


def test_a_busy_gateway_is_transient_not_a_channel_error(fake: FakePdd,
                                                        server: RunningServer) -> None:
    fake.busy_next = 1
    with pytest.raises(TransientError) as caught:
        run(shop(server), lambda c: c.fetch(WINDOW, None))
    assert not isinstance(caught.value, Throttled | ChannelError)


def test_an_expired_token_is_pdds_10019(fake: FakePdd, server: RunningServer) -> None:
    fake.token_expired = True
    with pytest.raises(ChannelError) as caught:
        run(shop(server), lambda c: c.fetch_order(SN))
    assert caught.value.code == "10019"


def test_a_clock_eleven_minutes_behind_is_refused(server: RunningServer) -> None:
    def late() -> datetime:
        return utc_now() - timedelta(minutes=11)

    with pytest.raises(ChannelError):
        run(shop(server), lambda c: c.fetch(WINDOW, None), clock=late)


def test_fetch_order_returns_the_full_order_or_none(fake: FakePdd, server: RunningServer) -> None:
    sn = "251215-900000000000001"

    async def work(client: Client) -> tuple[Any, Any]:
        return await client.fetch_order(sn), await client.fetch_order("251215-1")

    found, missing = run(shop(server), work)
    assert found == fake.orders[sn]
    assert missing is None
    assert fake.calls[0]["type"] == "pdd.order.information.get"


def test_an_unreachable_router_is_transient() -> None:
    config = ShopConfig("pdd", "s", {"client_id": "a", "client_secret": "b",
                                     "access_token": "c"}, {"base_url": "http://127.0.0.1:9/"})
    with pytest.raises(TransientError):
        run(config, lambda c: c.fetch(WINDOW, None))


# --- the message WebSocket ---------------------------------------------------------------

def common(frame_id: int, topic: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"id": frame_id, "commandType": "Common", "time": 1765765269000,
            "sendTime": 1765765268123,
            "message": {"type": topic, "mallID": 889123,
                        "content": json.dumps({"mall_id": 889123, **content})}}


def queue_frames(fake: FakePdd) -> None:
    fake.queue(common(BIG_ID, "pdd_trade_TradeConfirmed", {"tid": SN}))
    fake.queue(common(11, "pdd_trade_TradeSellerShip", {"tid": SN}))
    fake.queue(common(12, "pdd_refund_RefundCreated", {"tid": SN, "refund_fee": 1990}))
    fake.queue(common(13, "pdd_goods_GoodsOnShelf", {"goods_id": 1}))


def messages_run(config: ShopConfig, work: Callable[[Messages], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            source = Messages(config, session, utc_now)
            try:
                return await work(source)
            finally:
                await source.close()
    return asyncio.run(main())


def test_frames_become_deliveries_and_acks_stop_their_redelivery(fake: FakePdd,
                                                                 server: RunningServer) -> None:
    queue_frames(fake)

    async def work(source: Messages) -> tuple[list[Any], list[Any]]:
        first = await source.messages()
        await source.confirm(first[:2])
        await source.close()  # the closing handshake: the server has read both Acks
        return first, await source.messages()

    first, second = messages_run(shop(server), work)
    assert [d.delivery_id for d in first] == [
        "pdd:msg:9007199254740993", "pdd:msg:11", "pdd:msg:12", "pdd:msg:13"]
    confirmed, shipped, refund, goods = first
    assert [c.status for c in confirmed.status_changes] == [OrderStatus.PAID]
    assert confirmed.fetch == [SN]
    assert [c.status for c in shipped.status_changes] == [OrderStatus.SHIPPED]
    assert (refund.status_changes, refund.fetch) == ([], [SN])
    assert (goods.status_changes, goods.fetch, goods.ack) == ([], [], "13")
    ack = fake.acks[0]
    assert (ack["id"], ack["sendTime"], ack["type"], ack["mallID"]) == (
        BIG_ID, 1765765268123, "pdd_trade_TradeConfirmed", 889123)
    assert [d.delivery_id for d in second] == ["pdd:msg:12", "pdd:msg:13"]
    assert len(fake.paths) == 2 and fake.paths[0] != fake.paths[1]  # a fresh signed path
    assert fake.heartbeats >= 2


def test_unacked_frames_return_with_the_same_ids_after_pdd_closes(fake: FakePdd,
                                                                  server: RunningServer) -> None:
    queue_frames(fake)

    async def work(source: Messages) -> tuple[list[Any], list[Any]]:
        first = await source.messages()
        await asyncio.to_thread(kick_from, server.loop, fake)
        return first, await source.messages()

    first, again = messages_run(shop(server), work)
    assert len(fake.paths) == 2  # it reconnected
    assert [d.delivery_id for d in again] == [d.delivery_id for d in first]
    assert again[0].status_changes == first[0].status_changes
    assert fake.acks == []


def test_a_frame_not_understood_is_refused_and_acknowledged(fake: FakePdd,
                                                            server: RunningServer) -> None:
    fake.queue(common(21, "pdd_trade_TradeConfirmed", {"tid": "not-an-order-sn"}))
    fake.queue(common(22, "pdd_trade_TradeSellerShip", {"tid": SN}))

    async def work(source: Messages) -> list[Any]:
        deliveries = await source.messages()
        await source.confirm(deliveries)
        await source.close()  # the closing handshake: the server has read both Acks
        return deliveries

    refused, shipped = messages_run(shop(server), work)
    assert (refused.delivery_id, refused.ack) == ("pdd:msg:21", "21")
    assert refused.invalid is not None and "content.tid" in refused.invalid
    assert json.loads(refused.original) == common(21, "pdd_trade_TradeConfirmed",
                                                  {"tid": "not-an-order-sn"})
    assert (refused.status_changes, refused.fetch) == ([], [])
    assert shipped.invalid is None and shipped.delivery_id == "pdd:msg:22"
    assert fake.frames == {}
    assert [(a["id"], a["type"]) for a in fake.acks] == [
        (21, "pdd_trade_TradeConfirmed"), (22, "pdd_trade_TradeSellerShip")]


def test_a_frame_that_is_not_json_is_refused_under_a_stable_id_and_not_acknowledged(
        fake: FakePdd, server: RunningServer) -> None:
    fake.frames["garbled"] = '{"id": 23, "commandType": "Comm'

    async def work(source: Messages) -> tuple[list[Any], list[Any]]:
        first = await source.messages()
        await source.confirm(first)
        await source.close()
        return first, await source.messages()

    (first,), (again,) = messages_run(shop(server), work)
    assert first.invalid is not None and first.invalid.startswith("not JSON")
    assert first.original == b'{"id": 23, "commandType": "Comm'
    assert first.ack is None and fake.acks == []
    assert first.delivery_id == again.delivery_id
    assert first.delivery_id.startswith("pdd:msg:sha256:")


def test_a_forged_secret_cannot_open_the_message_socket(server: RunningServer) -> None:
    with pytest.raises(ChannelError) as caught:
        messages_run(shop(server, client_secret="forged"), lambda s: s.messages())
    assert caught.value.code == "403"
