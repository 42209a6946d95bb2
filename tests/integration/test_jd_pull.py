from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest

from ingest.jd import SEARCH_STATES, Client
from ingest.pull import ChannelError, Page, ShopConfig, Throttled, Window
from normalize.jd import map_order
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.errors import TransientError
from tests.channel_servers.base import serve
from tests.channel_servers.jd import JdRouter, fixture_orders, generated_orders

T = TypeVar("T")
APP_KEY = "8D2F0E6B1C4A4F9E8A7B6C5D4E3F2A1B"
SECRET = "c0ffee5e7a1b4c2d9e8f7a6b5c4d3e2f"
TOKEN = "9f3e2d1c-0b9a-4876-a5f4-e3d2c1b0a9f8"
NOW = datetime(2026, 3, 11, 4, 0, tzinfo=UTC)  # 12:00 in Beijing
WINDOW = Window(datetime(2026, 3, 10, tzinfo=SHANGHAI), datetime(2026, 3, 11, tzinfo=SHANGHAI))
GENERATED = 250  # three pages of 100
SHOP = "shanchuan.jd.com"
RATES = RateTable.from_mapping({})


def router(**changes: Any) -> JdRouter:
    orders = generated_orders(GENERATED, WINDOW.start, timedelta(minutes=5)) + fixture_orders()
    return JdRouter(APP_KEY, SECRET, TOKEN, orders, now=lambda: NOW, **changes)


def run(fake: JdRouter, work: Callable[[Client], Awaitable[T]], *, clock: datetime = NOW,
        url: str | None = None, **credentials: str) -> T:
    """`work` with a Client talking over HTTP to `fake` (or to `url`)."""
    with serve(fake.app()) as server:
        shop = ShopConfig("jd", SHOP, {"app_key": APP_KEY, "app_secret": SECRET,
                                       "access_token": TOKEN, **credentials},
                          {"base_url": url or f"{server.url}/routerjson"})

        async def main() -> T:
            async with aiohttp.ClientSession() as session:
                return await work(Client(shop, session, lambda: clock))

        return asyncio.run(main())


async def all_pages(client: Client, window: Window = WINDOW) -> list[Page]:
    pages = [await client.fetch(window, None)]
    while pages[-1].next is not None:
        pages.append(await client.fetch(window, pages[-1].next))
    return pages


def first_page(window: Window = WINDOW) -> Callable[[Client], Awaitable[Page]]:
    return lambda client: client.fetch(window, None)


def test_paging_a_window_returns_every_order_modified_in_it_exactly_once() -> None:
    fake = router()
    pages = run(fake, all_pages)

    ids = [order["orderId"] for page in pages for order in page.orders]
    expected = {order["orderId"] for order in fake.orders if order["orderId"].startswith("32")}
    assert [len(page.orders) for page in pages] == [100, 100, 50]
    assert len(ids) == len(set(ids)) == GENERATED
    assert set(ids) == expected
    assert [call["page"] for call in fake.calls] == ["1", "2", "3"]


def test_every_paged_order_is_accepted_by_the_mapper() -> None:
    pages = run(router(), all_pages)

    orders = [map_order(o, shop=SHOP, rates=RATES) for page in pages for o in page.orders]
    assert len(orders) == GENERATED
    assert all(WINDOW.start <= order.updated_at <= WINDOW.end for order in orders)
    cod = [order for order in orders if "cod" in order.flags]
    assert cod and all(order.paid_at is None for order in cod)  # "0001-01-01 00:00:00"


def test_paging_stops_after_the_last_full_page() -> None:
    fake = router()
    two_pages = Window(WINDOW.start, WINDOW.start + timedelta(minutes=5 * 199, seconds=30))
    pages = run(fake, lambda client: all_pages(client, two_pages))

    assert [len(page.orders) for page in pages] == [100, 100]
    assert len(fake.calls) == 2


def test_the_search_asks_by_modified_time_for_every_state_a_page_of_100() -> None:
    fake = router()
    run(fake, first_page())

    call = fake.calls[0]
    assert call["dateType"] == 0
    assert set(call["order_state"].split(",")) == set(SEARCH_STATES)
    assert call["page_size"] == "100"
    assert (call["start_date"], call["end_date"]) == ("2026-03-10 00:00:00", "2026-03-11 00:00:00")


def test_a_window_end_inside_a_second_is_rounded_up_to_keep_that_second() -> None:
    fake = router()
    run(fake, first_page(Window(WINDOW.start, WINDOW.end + timedelta(milliseconds=200))))
    assert fake.calls[0]["end_date"] == "2026-03-11 00:00:01"


def test_a_window_without_orders_is_one_empty_page() -> None:
    empty = Window(datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 2, tzinfo=UTC))
    assert run(router(), first_page(empty)) == Page([], None)


def test_a_forged_secret_is_refused_as_an_invalid_signature() -> None:
    with pytest.raises(ChannelError) as refused:
        run(router(), first_page(), app_secret="not-the-app-secret")
    assert refused.value.code == "12"
    assert SECRET not in str(refused.value) and TOKEN not in str(refused.value)


def test_an_unknown_access_token_is_refused() -> None:
    with pytest.raises(ChannelError) as refused:
        run(router(), first_page(), access_token="expired-token")
    assert refused.value.code == "19"


def test_a_clock_more_than_six_minutes_off_is_refused_and_five_minutes_is_not() -> None:
    assert run(router(), first_page(), clock=NOW - timedelta(minutes=5)).orders
    with pytest.raises(ChannelError) as refused:
        run(router(), first_page(), clock=NOW - timedelta(minutes=7))
    assert refused.value.code == "8"


def test_a_window_wider_than_a_month_is_refused_by_jos() -> None:
    wide = Window(WINDOW.start - timedelta(days=32), WINDOW.start)
    with pytest.raises(ChannelError) as refused:
        run(router(), first_page(wide))
    assert refused.value.code == "10100041"


def test_the_widest_window_is_accepted_even_across_february() -> None:
    start = datetime(2026, 2, 1, tzinfo=SHANGHAI)
    page = run(router(), first_page(Window(start, start + Client.max_window)))
    assert page.next is None
    assert [order["orderId"] for order in page.orders] == ["311877219054"]  # modified 02-28


def test_throttling_raises_throttled_and_the_next_call_goes_through() -> None:
    async def twice(client: Client) -> Page:
        with pytest.raises(Throttled):
            await client.fetch(WINDOW, None)
        return await client.fetch(WINDOW, None)

    assert len(run(router(throttle_next=1), twice).orders) == 100


def test_an_unavailable_backend_is_transient() -> None:
    with pytest.raises(TransientError) as failed:
        run(router(unavailable_next=1), first_page())
    assert not isinstance(failed.value, Throttled)


def test_a_busy_api_result_is_transient() -> None:
    with pytest.raises(TransientError) as failed:
        run(router(busy_next=1), first_page())
    assert not isinstance(failed.value, Throttled)


def test_an_unreachable_router_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError):
        run(router(), first_page(), url=f"http://127.0.0.1:{port}/routerjson")


def test_fetch_order_returns_the_order_as_the_mapper_reads_it() -> None:
    original = next(o for o in fixture_orders() if o["orderId"] == "312657084219")
    fetched = run(router(), lambda client: client.fetch_order("312657084219"))

    assert fetched is not None
    assert map_order(fetched, shop=SHOP, rates=RATES) == map_order(original, shop=SHOP,
                                                                  rates=RATES)


def test_fetch_order_of_an_unknown_order_is_none() -> None:
    fake = router()
    assert run(fake, lambda client: client.fetch_order("399999999999")) is None
    assert fake.calls == [{"order_id": 399999999999, "optional_fields": fake.calls[0][
        "optional_fields"]}]


def test_fetch_order_of_something_that_is_no_order_id_asks_nothing() -> None:
    fake = router()
    assert run(fake, lambda client: client.fetch_order("JD-42")) is None
    assert fake.calls == []
