from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest

from ingest.pull import ChannelError, Page, ShopConfig, Throttled, Window
from ingest.wechat import Client
from normalize.rates import RateTable
from normalize.wechat import map_order
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError, TransientError
from schemas.order import OrderStatus
from tests.channel_servers.base import RunningServer, serve
from tests.channel_servers.wechat import FakeWeChat

T = TypeVar("T")
# The five fixture orders were updated between 2026-03-10 and 2026-03-15 (Beijing).
WEEK = Window(datetime(2026, 3, 9, tzinfo=SHANGHAI), datetime(2026, 3, 16, tzinfo=SHANGHAI))
NOW = datetime(2026, 3, 16, 12, 0, 30, tzinfo=SHANGHAI)
RATES = RateTable.from_mapping({"USD": {"2026-01-01": "7.10"}})


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake() -> FakeWeChat:
    return FakeWeChat()


@pytest.fixture
def server(fake: FakeWeChat) -> Iterator[RunningServer]:
    with serve(fake.app()) as running:
        yield running


def shop(server: RunningServer, fake: FakeWeChat, **credentials: str) -> ShopConfig:
    return ShopConfig(
        channel="wechat", shop="wx-tea-flagship",
        credentials={"appid": fake.appid, "appsecret": fake.appsecret, **credentials},
        options={"base_url": server.url, "rate_per_s": "1000"},
    )


def run(config: ShopConfig, work: Callable[[Client], Awaitable[T]], clock: Clock | None = None
        ) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await work(Client(config, session, clock or Clock()))

    return asyncio.run(main())


async def walk(client: Client, window: Window = WEEK) -> list[Page]:
    pages = [await client.fetch(window, None)]
    while pages[-1].next is not None:
        pages.append(await client.fetch(window, pages[-1].next))
    return pages


def test_a_window_is_walked_page_by_page_into_orders_the_mapper_accepts(
    server: RunningServer, fake: FakeWeChat
) -> None:
    fake.page_cap = 2

    pages = run(shop(server, fake), walk)

    assert [len(p.orders) for p in pages] == [2, 2, 1]
    orders = [o for p in pages for o in p.orders]
    in_week = {i for i, o in fake.orders.items()
               if WEEK.start.timestamp() <= o["update_time"] <= WEEK.end.timestamp()}
    assert len(in_week) == 5 and len(fake.orders) > 5  # one fixture lies outside the week
    assert sorted(o["order_id"] for o in orders) == sorted(in_week)
    mapped = [map_order(o, shop="wx-tea-flagship", rates=RATES) for o in orders]
    assert {m.native_id for m in mapped} == in_week
    assert OrderStatus.COMPLETED in {m.status for m in mapped}
    lists = [body for path, body in fake.calls if path.endswith("/list/get")]
    assert lists[0]["update_time_range"] == {"start_time": 1772985600, "end_time": 1773590400}
    assert [body["next_key"] for body in lists] == ["", pages[0].next, pages[1].next]
    assert all(body["page_size"] == 100 for body in lists)
    assert fake.token_calls == 1  # one token serves the whole walk


def test_only_orders_updated_inside_the_window_are_returned(
    server: RunningServer, fake: FakeWeChat
) -> None:
    day = Window(datetime(2026, 3, 12, tzinfo=SHANGHAI), datetime(2026, 3, 13, tzinfo=SHANGHAI))

    pages = run(shop(server, fake), lambda c: walk(c, day))

    assert [o["order_id"] for p in pages for o in p.orders] == ["3705101684220149504"]


def test_an_expired_token_is_fetched_again_once_and_the_call_repeated(
    server: RunningServer, fake: FakeWeChat
) -> None:
    async def work(client: Client) -> Page:
        await client.fetch(WEEK, None)
        fake.expire_tokens()
        return await client.fetch(WEEK, None)

    page = run(shop(server, fake), work)

    assert len(page.orders) == 5
    assert fake.token_calls == 2


def test_a_token_past_its_lifetime_is_renewed_before_it_is_used(
    server: RunningServer, fake: FakeWeChat
) -> None:
    clock = Clock()

    async def work(client: Client) -> None:
        await client.fetch_order("3705115058471208928")
        clock.now += timedelta(seconds=7200 - 299)  # inside the renewal margin
        await client.fetch_order("3705115058471208928")

    run(shop(server, fake), work, clock)

    assert fake.token_calls == 2


def test_a_token_refused_twice_stops_the_shop_with_the_channel_code(
    server: RunningServer, fake: FakeWeChat
) -> None:
    fake.token_ttl_s = 0  # every token the fake issues is already expired

    with pytest.raises(ChannelError) as refused:
        run(shop(server, fake), lambda c: c.fetch(WEEK, None))

    assert refused.value.code == "42001"
    assert fake.token_calls == 2


def test_a_wrong_app_secret_is_a_channel_error_that_does_not_reveal_the_secret(
    server: RunningServer, fake: FakeWeChat
) -> None:
    config = shop(server, fake, appsecret="not-the-secret-at-all")

    with pytest.raises(ChannelError) as refused:
        run(config, lambda c: c.fetch(WEEK, None))

    assert refused.value.code == "40125"
    assert "appsecret" in str(refused.value)
    assert "not-the-secret-at-all" not in str(refused.value)
    assert not [path for path, _ in fake.calls]  # no order call without a token


def test_a_window_wider_than_seven_days_is_refused_by_the_channel(
    server: RunningServer, fake: FakeWeChat
) -> None:
    wide = Window(WEEK.start, WEEK.end + timedelta(seconds=1))

    with pytest.raises(ChannelError) as refused:
        run(shop(server, fake), lambda c: c.fetch(wide, None))

    assert refused.value.code == "40097"
    assert Client.max_window == timedelta(days=7)


def test_an_exact_seven_day_window_with_fractional_seconds_stays_within_the_limit(
    server: RunningServer, fake: FakeWeChat
) -> None:
    start = WEEK.start + timedelta(microseconds=500_000)

    page = run(shop(server, fake), lambda c: c.fetch(Window(start, start + Client.max_window),
                                                      None))

    assert len(page.orders) == 5


def test_a_spent_daily_quota_is_throttled_until_midnight_in_beijing(
    server: RunningServer, fake: FakeWeChat
) -> None:
    fake.throttle_next = 1

    with pytest.raises(Throttled) as throttled:
        run(shop(server, fake), lambda c: c.fetch(WEEK, None))

    assert throttled.value.retry_after_s == pytest.approx(11 * 3600 + 59 * 60 + 30)


def test_a_spent_minute_quota_is_throttled_until_the_next_minute(
    server: RunningServer, fake: FakeWeChat
) -> None:
    fake.throttle_next, fake.throttle_code = 1, 45011

    async def work(client: Client) -> Page:
        with pytest.raises(Throttled) as throttled:
            await client.fetch(WEEK, None)
        assert throttled.value.retry_after_s == 30
        return await client.fetch(WEEK, None)  # the quota is back

    assert len(run(shop(server, fake), work).orders) == 5


def test_a_busy_channel_is_a_transient_error(server: RunningServer, fake: FakeWeChat) -> None:
    fake.busy_next = 1

    with pytest.raises(TransientError) as busy:
        run(shop(server, fake), lambda c: c.fetch_order("3705115058471208928"))

    assert not isinstance(busy.value, Throttled)
    assert "-1" in str(busy.value)


def test_an_unreachable_channel_is_a_transient_error(fake: FakeWeChat) -> None:
    with serve(fake.app()) as running:
        config = shop(running, fake)
    # The server is gone: the port refuses connections.

    with pytest.raises(TransientError) as down:
        run(config, lambda c: c.fetch(WEEK, None))

    assert "access token" in str(down.value)


def test_fetch_order_returns_the_order_object_with_its_exact_id(
    server: RunningServer, fake: FakeWeChat
) -> None:
    order = run(shop(server, fake), lambda c: c.fetch_order("3705123390154271488"))

    assert order is not None
    assert order["order_id"] == "3705123390154271488"
    assert order["status"] == 30
    assert map_order(order, shop="s", rates=RATES).status is OrderStatus.SHIPPED


def test_fetch_order_of_an_unknown_id_is_none(server: RunningServer, fake: FakeWeChat) -> None:
    assert run(shop(server, fake), lambda c: c.fetch_order("3700000000000000001")) is None


def test_a_shop_without_credentials_is_refused_before_any_request(fake: FakeWeChat) -> None:
    config = ShopConfig(channel="wechat", shop="s", credentials={"appid": "wx1"})

    async def build() -> Any:
        async with aiohttp.ClientSession() as session:
            return Client(config, session, Clock())

    with pytest.raises(ConfigurationError, match="appsecret"):
        asyncio.run(build())


def test_the_client_defaults_to_the_production_api(fake: FakeWeChat) -> None:
    config = ShopConfig(channel="wechat", shop="s",
                        credentials={"appid": "wx1", "appsecret": "secret"})

    async def build() -> str:
        async with aiohttp.ClientSession() as session:
            return Client(config, session, lambda: datetime.now(UTC)).base_url

    assert asyncio.run(build()) == "https://api.weixin.qq.com"
