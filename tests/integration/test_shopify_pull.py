"""The Shopify pull client over real HTTP against the fake Admin REST API."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.error import HTTPError

import aiohttp
import pytest

from ingest.pull import ChannelError, Page, ShopConfig, Throttled, Window
from ingest.shopify import Client
from normalize.rates import DEFAULT_RATES, RateTable
from normalize.shopify import map_order
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError, TransientError
from schemas.order import OrderStatus
from tests.channel_servers.base import RunningServer, serve
from tests.channel_servers.shopify import BASE_ID, FakeShopify, sample_orders

TOKEN = "shpat_" + "0123456789abcdef" * 2
SHOP = "acme-cn.myshopify.com"
DAY = Window(datetime(2026, 1, 24, tzinfo=UTC), datetime(2026, 1, 25, tzinfo=UTC))
RATES = RateTable.from_mapping(DEFAULT_RATES)
T = TypeVar("T")


@pytest.fixture
def shopify() -> Iterator[tuple[FakeShopify, RunningServer]]:
    fake = FakeShopify(sample_orders(), TOKEN)
    with serve(fake.app()) as server:
        yield fake, server


def config(server: RunningServer, token: str = TOKEN, **options: str) -> ShopConfig:
    return ShopConfig("shopify", SHOP, credentials={"access_token": token},
                      options={"base_url": server.url, "page_size": "2", "rate": "50", **options})


def run(shop: ShopConfig, call: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await call(Client(shop, session, lambda: datetime.now(UTC)))
    return asyncio.run(main())


async def walk(client: Client, window: Window) -> list[Page]:
    pages = [await client.fetch(window, None)]
    while pages[-1].next is not None:
        pages.append(await client.fetch(window, pages[-1].next))
    return pages


def test_a_day_is_walked_in_pages_through_the_link_header_and_every_order_maps(
    shopify: tuple[FakeShopify, RunningServer],
) -> None:
    fake, server = shopify
    pages = run(config(server), lambda client: walk(client, DAY))
    assert [len(page.orders) for page in pages] == [2, 2, 2]
    orders = [order for page in pages for order in page.orders]
    assert [o["id"] for o in orders] == [BASE_ID + n for n in range(6)]  # not the 22nd's order
    mapped = {o.native_id: o for o in (map_order(p, shop=SHOP, rates=RATES) for p in orders)}
    assert mapped[str(BASE_ID)].paid_amount == mapped[str(BASE_ID + 3)].paid_amount
    assert mapped[str(BASE_ID + 1)].recipient is None
    assert mapped[str(BASE_ID + 2)].lines[0].sku is None
    assert mapped[str(BASE_ID + 5)].status is OrderStatus.CANCELLED  # status=any was sent
    first, *following = [query for _, query in fake.requests]
    assert first == {"limit": "2", "status": "any", "updated_at_min": "2026-01-24T00:00:00Z",
                     "updated_at_max": "2026-01-25T00:00:00Z"}
    assert [set(query) for query in following] == [{"limit", "page_info"}] * 2


def test_a_window_in_another_zone_is_sent_in_utc_whole_seconds(
    shopify: tuple[FakeShopify, RunningServer],
) -> None:
    fake, server = shopify
    window = Window(datetime(2026, 1, 24, 9, 29, 59, 900_000, tzinfo=SHANGHAI),
                    datetime(2026, 1, 24, 9, 30, 0, 500_000, tzinfo=SHANGHAI))
    page = run(config(server), lambda client: client.fetch(window, None))
    assert [o["id"] for o in page.orders] == [BASE_ID + 4]  # updated 09:30:00+08:00 exactly
    assert page.next is None
    query = fake.requests[0][1]
    assert (query["updated_at_min"], query["updated_at_max"]) == ("2026-01-24T01:29:59Z",
                                                                  "2026-01-24T01:30:00Z")


def test_filters_beside_page_info_are_refused_by_shopify(
    shopify: tuple[FakeShopify, RunningServer],
) -> None:
    _, server = shopify
    first = run(config(server), lambda client: client.fetch(DAY, None))
    assert first.next is not None
    url = (f"{server.url}/admin/api/2025-01/orders.json?limit=2&page_info={first.next}"
           "&updated_at_min=2026-01-24T00:00:00Z")
    request = urllib.request.Request(url, headers={"X-Shopify-Access-Token": TOKEN})
    with pytest.raises(HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert b"updated_at_min cannot be passed when page_info is present" in caught.value.read()


def test_a_bad_token_stops_the_shop_with_shopifys_answer(
    shopify: tuple[FakeShopify, RunningServer],
) -> None:
    _, server = shopify
    with pytest.raises(ChannelError) as caught:
        run(config(server, token="shpat_revoked"), lambda client: client.fetch(DAY, None))
    assert caught.value.code == "401"
    assert "Invalid API key or access token" in str(caught.value)
    assert "shpat_revoked" not in str(caught.value)


def test_a_429_is_throttled_with_shopifys_retry_after(
    shopify: tuple[FakeShopify, RunningServer],
) -> None:
    fake, server = shopify
    fake.throttle_next = 1
    with pytest.raises(Throttled) as caught:
        run(config(server), lambda client: client.fetch(DAY, None))
    assert caught.value.retry_after_s == 2.0
    assert len(run(config(server), lambda client: client.fetch(DAY, None)).orders) == 2


def test_a_5xx_and_an_unreachable_shop_are_transient(
    shopify: tuple[FakeShopify, RunningServer],
) -> None:
    fake, server = shopify
    fake.fail_next = 1
    with pytest.raises(TransientError) as caught:
        run(config(server), lambda client: client.fetch(DAY, None))
    assert not isinstance(caught.value, Throttled)
    closed = ShopConfig("shopify", SHOP, credentials={"access_token": TOKEN},
                        options={"base_url": "http://127.0.0.1:9"})
    with pytest.raises(TransientError):
        run(closed, lambda client: client.fetch_order(str(BASE_ID)))


def test_the_call_limit_header_slows_the_client_before_shopify_refuses() -> None:
    fake = FakeShopify(sample_orders(), TOKEN, bucket=4, leak_per_s=10)
    with serve(fake.app()) as server:
        shop = config(server, rate="10", burst="40")  # it believes in a bucket of 40

        async def eight_calls(client: Client) -> list[Mapping[str, Any] | None]:
            return [await client.fetch_order(str(BASE_ID)) for _ in range(8)]

        started = time.monotonic()
        found = run(shop, eight_calls)
        elapsed = time.monotonic() - started
    assert all(order is not None for order in found)
    assert fake.throttled == 0
    assert elapsed >= 0.3  # four calls had to wait for the shop's bucket to leak


def test_fetch_order_finds_an_order_and_answers_none_for_an_unknown_one(
    shopify: tuple[FakeShopify, RunningServer],
) -> None:
    fake, server = shopify

    async def both(client: Client) -> tuple[Any, Any, Any]:
        return (await client.fetch_order(str(BASE_ID + 5)), await client.fetch_order("1"),
                await client.fetch_order("../shop"))

    found, unknown, malformed = run(config(server), both)
    assert found is not None and found["id"] == BASE_ID + 5  # exact beyond 2^53
    assert map_order(found, shop=SHOP, rates=RATES).status is OrderStatus.CANCELLED
    assert unknown is None and malformed is None
    assert [path for path, _ in fake.requests] == [
        f"/admin/api/2025-01/orders/{BASE_ID + 5}.json", "/admin/api/2025-01/orders/1.json"]


def test_the_api_address_comes_from_the_shop_domain_unless_configured() -> None:
    def api_url(shop: str, **options: str) -> str:
        config = ShopConfig("shopify", shop, credentials={"access_token": TOKEN}, options=options)

        async def build() -> str:
            async with aiohttp.ClientSession() as session:
                return Client(config, session, lambda: datetime.now(UTC)).api_url
        return asyncio.run(build())

    assert api_url("acme-cn") == "https://acme-cn.myshopify.com/admin/api/2025-01"
    assert api_url("Acme-CN.myshopify.com") == "https://acme-cn.myshopify.com/admin/api/2025-01"
    assert api_url("x", base_url="http://127.0.0.1:1/", api_version="2025-04") == (
        "http://127.0.0.1:1/admin/api/2025-04")
    for shop, options in (("acme/../evil", {}), ("acme", {"api_version": "latest"}),
                          ("acme", {"page_size": "251"})):
        with pytest.raises(ConfigurationError):
            api_url(shop, **options)
