from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from ingest.pull import ChannelError, Page, ShopConfig, Throttled, Window
from ingest.push import Delivery
from ingest.taobao import Client, Messages, tmc_delivery
from normalize.rates import RateTable
from normalize.taobao import map_order
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError, InvalidInput, TransientError
from schemas.order import OrderStatus
from tests.channel_servers.base import serve
from tests.channel_servers.taobao import FakeTop, fixture_trades, modified_at

T = TypeVar("T")
APP_KEY, SECRET, SESSION = "23018966", "e8792cf243614eb3c7c16b8c05d6135a", "6100e2Z9fc57e8ed8"
SHOP = "shanchuan.tmall.com"
NOW = datetime(2026, 3, 12, 9, 0, tzinfo=SHANGHAI)
DAY = Window(datetime(2026, 3, 11, tzinfo=SHANGHAI), datetime(2026, 3, 12, tzinfo=SHANGHAI))
RATES = RateTable.from_mapping({})
FIXTURES = Path(__file__).parents[1] / "fixtures" / "taobao"
S = OrderStatus


def trades() -> list[dict[str, Any]]:
    """The six fixture trades modified an hour apart inside DAY, and one modified the day after."""
    inside = [modified_at(t, DAY.start + timedelta(hours=1 + i))
              for i, t in enumerate(fixture_trades())]
    later = modified_at({**inside[0], "tid": 4087312065519582999, "tid_str": "4087312065519582999"},
                        DAY.end + timedelta(hours=2))
    return [*inside, later]


def fake(**changes: Any) -> FakeTop:
    return FakeTop(APP_KEY, SECRET, SESSION, trades(), now=lambda: NOW, **changes)


def shop(url: str, secret: str = SECRET, session: str = SESSION, **options: str) -> ShopConfig:
    return ShopConfig("taobao", SHOP, {"app_key": APP_KEY, "app_secret": secret,
                                       "session": session},
                      {"base_url": f"{url}/router/rest", **options})


def against(server: FakeTop, work: Callable[[aiohttp.ClientSession, str], Awaitable[T]]) -> T:
    async def main(url: str) -> T:
        async with aiohttp.ClientSession() as http:
            return await work(http, url)

    with serve(server.app()) as running:
        return asyncio.run(main(running.url))


def pull(server: FakeTop, window: Window = DAY, clock: datetime = NOW, secret: str = SECRET,
         session: str = SESSION, **options: str) -> list[Page]:
    async def work(http: aiohttp.ClientSession, url: str) -> list[Page]:
        client = Client(shop(url, secret, session, **options), http, lambda: clock)
        pages = [await client.fetch(window, None)]
        while pages[-1].next is not None:
            pages.append(await client.fetch(window, pages[-1].next))
        return pages

    return against(server, work)


def tids(pages: list[Page]) -> list[str]:
    return [str(order["tid_str"]) for page in pages for order in page.orders]


def test_a_window_of_three_pages_yields_every_trade_in_full_exactly_once() -> None:
    server = fake()
    pages = pull(server, page_size="2")
    assert len(pages) == 3
    listed = server.calls_of("taobao.trades.sold.increment.get")
    assert [c["page_no"] for c in listed] == ["1", "3", "2", "1"]  # count, then last page first
    assert [c["use_has_next"] for c in listed] == ["false", "true", "true", "true"]
    expected = {str(t["tid"]): t for t in trades()[:6]}
    assert sorted(tids(pages)) == sorted(expected)
    for order in (o for page in pages for o in page.orders):
        native = expected[str(order["tid_str"])]
        assert map_order(order, shop=SHOP, rates=RATES) == map_order(native, shop=SHOP,
                                                                      rates=RATES)


def test_the_window_is_sent_as_naive_beijing_time_and_a_19_digit_tid_stays_exact() -> None:
    server = fake()
    pages = pull(server)
    listed = server.calls_of("taobao.trades.sold.increment.get")[0]
    assert (listed["start_modified"], listed["end_modified"]) == (
        "2026-03-11 00:00:00", "2026-03-12 00:00:00")
    paid = next(o for p in pages for o in p.orders if o["tid_str"] == "4087312065519582261")
    assert paid["tid"] == 4087312065519582261 and isinstance(paid["tid"], int)


def test_a_window_given_in_utc_is_converted_to_beijing() -> None:
    server = fake()
    pull(server, Window(DAY.start.astimezone(UTC), DAY.end.astimezone(UTC)))
    listed = server.calls_of("taobao.trades.sold.increment.get")[0]
    assert listed["start_modified"] == "2026-03-11 00:00:00"


def test_a_single_page_window_needs_one_list_call() -> None:
    server = fake()
    pages = pull(server)
    assert len(pages) == 1 and pages[0].next is None and len(pages[0].orders) == 6
    assert len(server.calls_of("taobao.trades.sold.increment.get")) == 1


def test_an_empty_window_is_one_empty_page() -> None:
    server = fake()
    pages = pull(server, Window(DAY.start - timedelta(days=1), DAY.start - timedelta(hours=1)))
    assert pages == [Page([], None)]
    assert not server.calls_of("taobao.trade.fullinfo.get")


def test_a_trade_modified_while_paging_does_not_hide_another() -> None:
    # TOP lists by `modified` descending: the newest trade leaving the window mid-walk shifts
    # every later position by one. Walking from the last page back reads the shifted trade again
    # instead of skipping it; the moved trade belongs to the next window.
    server = fake()
    newest = str(trades()[5]["tid"])

    def touch_newest(top: FakeTop) -> None:
        if len(top.calls_of("taobao.trades.sold.increment.get")) == 2:
            top.trades[newest] = modified_at(top.trades[newest], DAY.end + timedelta(minutes=5))

    server.after_list = touch_newest
    pages = pull(server, page_size="2")
    assert set(tids(pages)) == {str(t["tid"]) for t in trades()[:5]}


def test_hmac_and_hmac_sha256_signatures_are_accepted() -> None:
    for method in ("hmac", "hmac-sha256"):
        server = fake()
        assert len(tids(pull(server, sign_method=method))) == 6
        assert server.calls[0]["sign_method"] == method


def test_a_forged_secret_is_refused_with_tops_invalid_signature() -> None:
    with pytest.raises(ChannelError) as caught:
        pull(fake(), secret="not-the-secret")
    assert caught.value.code == "25"
    assert "not-the-secret" not in str(caught.value)


def test_an_invalid_session_is_a_channel_error() -> None:
    with pytest.raises(ChannelError) as caught:
        pull(fake(), session="expired")
    assert caught.value.code == "27"


def test_a_clock_eleven_minutes_off_is_refused() -> None:
    with pytest.raises(ChannelError) as caught:
        pull(fake(), clock=NOW + timedelta(minutes=11))
    assert caught.value.code == "31"


def test_a_window_wider_than_a_day_is_refused_by_top() -> None:
    server = fake()
    with pytest.raises(ChannelError) as caught:
        pull(server, Window(DAY.start, DAY.end + timedelta(seconds=1)))
    assert caught.value.code == "isv.invalid-parameter:end_modified"
    assert Client.max_window == timedelta(days=1)


def test_throttling_raises_throttled_with_the_ban_length() -> None:
    server = fake()
    server.throttle_next = 1
    with pytest.raises(Throttled) as caught:
        pull(server)
    assert caught.value.retry_after_s == 2.0
    assert "App Call Limited" in str(caught.value)
    assert len(tids(pull(server))) == 6  # the ban is over


def test_fetch_order_returns_the_full_trade_or_none() -> None:
    async def work(http: aiohttp.ClientSession, url: str) -> tuple[Any, Any]:
        client = Client(shop(url), http, lambda: NOW)
        return (await client.fetch_order("4076620193455831907"),
                await client.fetch_order("4000000000000000001"))

    found, missing = against(fake(), work)
    assert found["tid_str"] == "4076620193455831907" and found["status"] == "TRADE_CLOSED"
    assert map_order(found, shop=SHOP, rates=RATES).status == S.REFUNDED
    assert missing is None


def test_an_unreachable_router_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            await Client(shop(f"http://127.0.0.1:{port}"), http, lambda: NOW).fetch(DAY, None)

    with pytest.raises(TransientError, match="taobao.trades.sold.increment.get"):
        asyncio.run(main())


# -- TMC ---------------------------------------------------------------------------------------

PAY = json.loads((FIXTURES / "tmc_trade_buyer_pay.json").read_text(encoding="utf-8"))
TID = "4087312065519582261"


def frame(topic: str, content: Any, message_id: int = 1172200053212681005) -> dict[str, Any]:
    text = content if isinstance(content, str) else json.dumps(content)
    return {"id": message_id, "topic": f"taobao_{topic}", "pub_time": "2026-03-08 21:14:38",
            "content": text}


def test_a_buyer_pay_frame_is_a_paid_status_change_at_its_pub_time() -> None:
    delivery = tmc_delivery(SHOP, frame("trade_TradeBuyerPay", PAY["Content"]))
    (change,) = delivery.status_changes
    assert change.order_id == f"TB{TID}" and change.status == S.PAID
    assert change.at == datetime(2026, 3, 8, 21, 14, 38, tzinfo=SHANGHAI)
    assert (change.source, change.reason) == ("taobao", "taobao_trade_TradeBuyerPay")
    assert delivery.fetch == [] and delivery.orders == []
    assert delivery.delivery_id == "taobao:tmc:1172200053212681005"
    assert delivery.ack == "1172200053212681005"


def test_the_sdk_frame_names_of_the_fixture_are_read_too() -> None:
    delivery = tmc_delivery(SHOP, {**PAY, "ID": 77})
    assert [c.status for c in delivery.status_changes] == [S.PAID]
    assert delivery.delivery_id == "taobao:tmc:77"


def test_a_frame_without_id_gets_a_stable_delivery_id_and_no_ack() -> None:
    first, again = tmc_delivery(SHOP, PAY), tmc_delivery(SHOP, dict(PAY))
    assert first.delivery_id == again.delivery_id and first.delivery_id.startswith("taobao:tmc:")
    assert first.ack is None


@pytest.mark.parametrize(("topic", "status"), [
    ("trade_TradeSellerShip", S.SHIPPED), ("trade_TradeSuccess", S.COMPLETED)])
def test_ship_and_success_frames_are_status_changes(topic: str, status: OrderStatus) -> None:
    delivery = tmc_delivery(SHOP, frame(topic, {"tid": int(TID)}))
    assert [c.status for c in delivery.status_changes] == [status]


def test_a_trade_taobao_closed_before_payment_is_cancelled() -> None:
    content = {"tid": int(TID), "status": "TRADE_CLOSED_BY_TAOBAO"}
    delivery = tmc_delivery(SHOP, frame("trade_TradeClose", content))
    assert [c.status for c in delivery.status_changes] == [S.CANCELLED]


@pytest.mark.parametrize("content", [{"tid": int(TID), "status": "TRADE_CLOSED"},
                                     {"tid": int(TID)}])
def test_a_close_that_may_be_a_refund_is_fetched(content: dict[str, Any]) -> None:
    delivery = tmc_delivery(SHOP, frame("trade_TradeClose", content))
    assert delivery.fetch == [TID] and delivery.status_changes == []


def test_the_content_status_decides_through_the_mappers_table() -> None:
    content = {"tid": int(TID), "status": "PAID_FORBID_CONSIGN"}
    delivery = tmc_delivery(SHOP, frame("trade_TradeBuyerPay", content))
    assert [c.status for c in delivery.status_changes] == [S.REVIEW_HOLD]


@pytest.mark.parametrize("topic", [
    "trade_TradeCreate", "trade_TradeChanged", "trade_TradeLogisticsAddressChanged",
    "trade_TradeMemoModified", "refund_RefundSuccess", "trade_SomethingNew"])
def test_other_trade_frames_ask_to_fetch_the_trade(topic: str) -> None:
    delivery = tmc_delivery(SHOP, frame(topic, {"tid": 4087312065519582261, "oid": 1}))
    assert delivery.fetch == [TID] and delivery.status_changes == []


def test_a_frame_of_another_kind_does_nothing() -> None:
    delivery = tmc_delivery(SHOP, frame("item_ItemUpdate", {"num_iid": 682910471553}))
    assert (delivery.fetch, delivery.status_changes, delivery.ack) == (
        [], [], "1172200053212681005")


@pytest.mark.parametrize(("content", "path"), [
    ("{not json", "content"), ("[1, 2]", "content"), ('{"tid": 4.08e18}', "content.tid"),
    ('{"tid": NaN}', "content")])
def test_malformed_content_is_invalid_input_naming_the_path(content: str, path: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        tmc_delivery(SHOP, frame("trade_TradeCreate", content))
    assert caught.value.path == path


def test_a_status_topic_without_a_tid_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        tmc_delivery(SHOP, frame("trade_TradeBuyerPay", {"payment": "1.00"}))
    assert caught.value.path == "content.tid"


def queue(server: FakeTop) -> None:
    server.publish(1172200053212681001, "taobao_trade_TradeCreate", {"tid": 4091558230174490638})
    server.publish(1172200053212681002, "taobao_trade_TradeBuyerPay", PAY["Content"])
    server.publish(1172200053212681003, "taobao_trade_TradeClose",
                   {"tid": 4088125570392216683, "status": "TRADE_CLOSED_BY_TAOBAO"})
    server.publish(1172200053212681004, "taobao_trade_TradeCreate", "{broken")


def consume(server: FakeTop, rounds: Callable[[Messages], Awaitable[T]]) -> T:
    async def work(http: aiohttp.ClientSession, url: str) -> T:
        return await rounds(Messages(shop(url), http, lambda: NOW))

    return against(server, work)


def test_tmc_consume_maps_each_frame_and_confirm_removes_them() -> None:
    server = fake()
    queue(server)

    async def rounds(source: Messages) -> tuple[list[Delivery], list[Delivery]]:
        first = await source.messages()
        await source.confirm(first)
        return first, await source.messages()

    first, second = consume(server, rounds)
    assert [d.delivery_id for d in first] == [
        f"taobao:tmc:117220005321268100{i}" for i in (1, 2, 3, 4)]
    assert first[0].fetch == ["4091558230174490638"]
    assert [c.status for c in first[1].status_changes] == [S.PAID]
    assert [c.order_id for c in first[2].status_changes] == ["TB4088125570392216683"]
    assert [c.status for c in first[2].status_changes] == [S.CANCELLED]
    broken = first[3]  # not understood: refused for the DLQ and confirmed, never crashing
    assert (broken.fetch, broken.status_changes, broken.orders) == ([], [], [])
    assert broken.invalid is not None and broken.invalid.startswith("content: not JSON")
    assert json.loads(broken.original)["content"] == "{broken"
    assert all(d.invalid is None for d in first[:3])
    assert second == []
    (confirm,) = server.calls_of("taobao.tmc.messages.confirm")
    assert confirm["s_message_ids"] == ",".join(f"117220005321268100{i}" for i in (1, 2, 3, 4))
    assert "session" not in confirm  # TMC calls are the app's, not the seller's
    assert server.calls_of("taobao.tmc.messages.consume")[0]["group_name"] == "default"


def test_unconfirmed_frames_are_redelivered_with_the_same_delivery_id() -> None:
    server = fake()
    queue(server)

    async def rounds(source: Messages) -> tuple[list[Delivery], list[Delivery]]:
        first = await source.messages()
        await source.confirm(first[:1])
        return first, await source.messages()

    first, second = consume(server, rounds)
    assert [d.delivery_id for d in second] == [d.delivery_id for d in first[1:]]
    assert second[0].status_changes == first[1].status_changes


def test_a_broken_frame_without_a_usable_id_is_refused_under_a_stable_id_without_ack() -> None:
    server = fake()
    server.queue.append({"id": "m-17", "topic": "taobao_trade_TradeCreate", "content": "{"})

    async def rounds(source: Messages) -> tuple[list[Delivery], list[Delivery]]:
        return await source.messages(), await source.messages()

    (first,), (again,) = consume(server, rounds)
    assert first.invalid is not None and first.invalid.startswith("content: not JSON")
    assert first.ack is None and json.loads(first.original)["id"] == "m-17"
    assert first.delivery_id == again.delivery_id
    assert first.delivery_id.startswith("taobao:tmc:sha256:")


def test_a_throttled_consume_is_throttled() -> None:
    server = fake()
    server.throttle_next = 1
    with pytest.raises(Throttled):
        consume(server, lambda source: source.messages())


@pytest.mark.parametrize(("option", "value"), [
    ("sign_method", "sha1"), ("page_size", "500"), ("rate_per_s", "fast")])
def test_a_bad_option_is_refused_when_the_client_is_built(option: str, value: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            Client(shop("http://127.0.0.1:1", **{option: value}), http, lambda: NOW)

    with pytest.raises(ConfigurationError, match=option):
        asyncio.run(main())
