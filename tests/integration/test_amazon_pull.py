from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest

from ingest.amazon import Client
from ingest.pull import ChannelError, Page, ShopConfig, Throttled, Window
from normalize.amazon import map_order
from normalize.rates import RateTable
from schemas.errors import ConfigurationError, InvalidInput, TransientError
from schemas.order import OrderStatus
from tests.channel_servers.amazon import FakeAmazon, sample_orders
from tests.channel_servers.base import serve

T = TypeVar("T")
NOW = datetime(2026, 3, 22, tzinfo=UTC)
WINDOW = Window(datetime(2026, 3, 14, tzinfo=UTC), datetime(2026, 3, 15, tzinfo=UTC))
US_AND_DE = "ATVPDKIKX0DER,A1PA6795UKMFR9"
RATES = RateTable.from_mapping(
    {"USD": {"2026-01-01": "7.10"}, "EUR": {"2026-01-01": "7.75"}, "JPY": {"2026-01-01": "0.0475"}}
)
# getOrders order of the window: by LastUpdateDate; the JP order that day is not asked for.
WINDOW_IDS = [
    "112-5550001-0000001",
    "028-5550002-0000002",
    "114-5550003-0000003",
    "112-9273645-3309821",
    "113-2649301-7716243",
]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeAmazon]:
    yield FakeAmazon(sample_orders(), clock=lambda: NOW, page_size=2, items_page_size=1)


def shop(url: str, fake: FakeAmazon, **changes: str) -> ShopConfig:
    credentials = {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "refresh_token": fake.refresh_token,
    }
    options = {"base_url": url, "lwa_url": f"{url}/auth/o2/token", "marketplace_ids": US_AND_DE}
    for name, value in changes.items():
        (credentials if name in credentials else options)[name] = value
    return ShopConfig("amazon", "amazon-na-tea", credentials, options)


def run(
    fake: FakeAmazon,
    work: Callable[[Client], Awaitable[T]],
    clock: Clock | None = None,
    **changes: str,
) -> T:
    async def go(url: str) -> T:
        async with aiohttp.ClientSession() as session:
            return await work(Client(shop(url, fake, **changes), session, clock or Clock()))

    with serve(fake.app()) as server:
        return asyncio.run(go(server.url))


async def every_page(client: Client, window: Window = WINDOW) -> list[Page]:
    pages = [await client.fetch(window, None)]
    while pages[-1].next is not None:
        pages.append(await client.fetch(window, pages[-1].next))
    return pages


def ids(page: Page) -> list[str]:
    return [order["AmazonOrderId"] for order in page.orders]


def test_a_window_comes_in_three_pages_of_orders_with_their_items_attached(
    fake: FakeAmazon,
) -> None:
    pages = run(fake, every_page)
    assert [ids(page) for page in pages] == [WINDOW_IDS[:2], WINDOW_IDS[2:4], WINDOW_IDS[4:]]
    orders = [order for page in pages for order in page.orders]
    by_id = {o["AmazonOrderId"]: o for o in sample_orders()}
    for order in orders:
        assert order["OrderItems"] == by_id[order["AmazonOrderId"]]["OrderItems"]
        mapped = map_order(order, shop="amazon-na-tea", rates=RATES)
        assert mapped.native_status == order["OrderStatus"]
    assert [len(o["OrderItems"]) for o in orders] == [2, 1, 2, 2, 1]  # items came in pages of 1
    assert fake.statuses("getOrders") == [200, 200, 200]


def test_the_first_page_asks_for_the_window_in_utc_and_later_pages_send_only_the_token(
    fake: FakeAmazon,
) -> None:
    run(fake, every_page)
    first, *later = [call.query for call in fake.calls if call.operation == "getOrders"]
    assert first == {
        "MarketplaceIds": US_AND_DE,
        "LastUpdatedAfter": "2026-03-14T00:00:00Z",
        "LastUpdatedBefore": "2026-03-15T00:00:00Z",
        "MaxResultsPerPage": "100",
    }
    assert [set(query) for query in later] == [{"MarketplaceIds", "NextToken"}] * 2
    assert all("+" in query["NextToken"] and "=" in query["NextToken"] for query in later)


def test_a_next_token_alone_selects_its_page_whatever_window_comes_with_it(
    fake: FakeAmazon,
) -> None:
    async def work(client: Client) -> tuple[Page, Page]:
        first = await client.fetch(WINDOW, None)
        assert first.next is not None
        elsewhere = Window(NOW - timedelta(hours=2), NOW - timedelta(hours=1))
        return await client.fetch(WINDOW, first.next), await client.fetch(elsewhere, first.next)

    second, again = run(fake, work)
    assert ids(second) == ids(again) == WINDOW_IDS[2:4]


def test_orders_of_marketplaces_the_shop_does_not_sell_in_are_not_asked_for(
    fake: FakeAmazon,
) -> None:
    japan = Window(datetime(2026, 3, 12, tzinfo=UTC), datetime(2026, 3, 13, tzinfo=UTC))
    assert run(fake, lambda c: c.fetch(japan, None)).orders == []
    page = run(fake, lambda c: c.fetch(japan, None), marketplace_ids="A1VC38T7YXB528")
    assert ids(page) == ["503-8912457-2210964"]


def test_an_empty_window_is_one_empty_page(fake: FakeAmazon) -> None:
    quiet = Window(datetime(2026, 3, 17, tzinfo=UTC), datetime(2026, 3, 18, tzinfo=UTC))
    assert run(fake, lambda c: c.fetch(quiet, None)) == Page([], None)


def test_a_window_ending_inside_the_last_two_minutes_is_refused_by_amazon(fake: FakeAmazon) -> None:
    recent = Window(NOW - timedelta(hours=1), NOW - timedelta(minutes=1))
    with pytest.raises(ChannelError) as caught:
        run(fake, lambda c: c.fetch(recent, None))
    assert caught.value.code == "InvalidInput"
    assert fake.statuses("getOrders") == [400]
    just_old_enough = Window(NOW - timedelta(hours=1), NOW - timedelta(minutes=2))
    assert run(fake, lambda c: c.fetch(just_old_enough, None)).orders == []


def test_the_client_never_builds_a_window_amazon_would_refuse() -> None:
    assert Client.end_lag >= timedelta(minutes=2)
    assert Client.max_window == timedelta(days=1)


def test_one_access_token_serves_many_calls_until_amazon_says_it_expired(fake: FakeAmazon) -> None:
    async def work(client: Client) -> None:
        await client.fetch_order("112-9273645-3309821")
        fake.expire_tokens()
        assert await client.fetch_order("112-9273645-3309821") is not None

    run(fake, work)
    assert fake.grants == 2
    # getOrder, 2 x getOrderItems, then getOrder refused (expired), retried with a new token
    assert fake.statuses("getOrder") == [200, 403, 200]


def test_a_token_about_to_expire_is_replaced_before_it_is_used(fake: FakeAmazon) -> None:
    clock = Clock()

    async def work(client: Client) -> None:
        await client.fetch(WINDOW, None)
        clock.now = NOW + timedelta(seconds=fake.token_lifetime_s - 30)
        await client.fetch(WINDOW, None)

    run(fake, work, clock)
    assert fake.grants == 2
    assert 403 not in fake.statuses("getOrders") + fake.statuses("getOrderItems")


def test_a_wrong_client_secret_is_a_channel_error_that_does_not_show_the_secret(
    fake: FakeAmazon,
) -> None:
    with pytest.raises(ChannelError) as caught:
        run(fake, lambda c: c.fetch(WINDOW, None), client_secret="amzn1.oa2-cs.v1.wrong-one")
    assert caught.value.code == "invalid_client"
    assert "wrong-one" not in str(caught.value) and fake.client_secret not in str(caught.value)
    assert fake.calls == []


def test_a_revoked_refresh_token_is_a_channel_error(fake: FakeAmazon) -> None:
    with pytest.raises(ChannelError) as caught:
        run(fake, lambda c: c.fetch_order("112-9273645-3309821"), refresh_token="Atzr|revoked")
    assert caught.value.code == "invalid_grant"


def test_a_token_refused_twice_is_a_channel_error(fake: FakeAmazon) -> None:
    async def work(client: Client) -> None:
        await client.fetch_order("112-9273645-3309821")
        fake.token_lifetime_s = 0  # every new token is born expired
        fake.expire_tokens()
        await client.fetch_order("112-9273645-3309821")

    with pytest.raises(ChannelError) as caught:
        run(fake, work)
    assert caught.value.code == "Unauthorized"
    assert "has expired" in str(caught.value)
    assert fake.statuses("getOrder") == [200, 403, 403]


def test_quota_exceeded_is_throttled_for_as_long_as_one_request_at_the_rate_takes(
    fake: FakeAmazon,
) -> None:
    fake.throttle_next["getOrders"] = 1
    with pytest.raises(Throttled) as caught:
        run(fake, lambda c: c.fetch(WINDOW, None))
    assert caught.value.retry_after_s == pytest.approx(1 / 0.0167)
    assert "QuotaExceeded" in str(caught.value)
    assert ids(run(fake, lambda c: c.fetch(WINDOW, None))) == WINDOW_IDS[:2]


def test_a_retry_after_header_is_honoured(fake: FakeAmazon) -> None:
    fake.throttle_next["getOrderItems"] = 1
    fake.retry_after = "7"
    with pytest.raises(Throttled) as caught:
        run(fake, lambda c: c.fetch_order("112-9273645-3309821"))
    assert caught.value.retry_after_s == 7.0


def test_a_page_retried_after_a_throttle_does_not_fetch_the_same_items_again(
    fake: FakeAmazon,
) -> None:
    fake.throttle_items_of.add("028-5550002-0000002")

    async def work(client: Client) -> Page:
        with pytest.raises(Throttled):
            await client.fetch(WINDOW, None)
        return await client.fetch(WINDOW, None)

    page = run(fake, work)
    assert ids(page) == WINDOW_IDS[:2]
    item_calls = [c for c in fake.calls if c.operation == "getOrderItems"]
    # the first order's two item pages once; the second order's one page throttled, then asked
    assert [c.status for c in item_calls] == [200, 200, 429, 200]


def test_amazon_unavailable_is_transient(fake: FakeAmazon) -> None:
    fake.fail_next["getOrders"] = 1
    with pytest.raises(TransientError) as caught:
        run(fake, lambda c: c.fetch(WINDOW, None))
    assert not isinstance(caught.value, Throttled)
    assert "ServiceUnavailable" in str(caught.value)


def test_an_unreachable_endpoint_is_transient(fake: FakeAmazon) -> None:
    with pytest.raises(TransientError):
        run(
            fake,
            lambda c: c.fetch(WINDOW, None),
            base_url="http://127.0.0.1:9",
            lwa_url="http://127.0.0.1:9/auth/o2/token",
        )


def test_fetch_order_returns_the_order_with_its_items(fake: FakeAmazon) -> None:
    order = run(fake, lambda c: c.fetch_order("028-4751093-6628341"))
    assert order is not None
    assert order["OrderItems"][0]["SellerSKU"] == "TEA-BLK-100G"
    assert map_order(order, shop="amazon-eu", rates=RATES).status == OrderStatus.SHIPPED


@pytest.mark.parametrize("answer", ["404", "empty"])
def test_fetch_order_of_an_unknown_id_is_none(fake: FakeAmazon, answer: str) -> None:
    fake.unknown_order = answer
    assert run(fake, lambda c: c.fetch_order("999-0000000-0000000")) is None
    assert fake.statuses("getOrderItems") == []


def test_a_cancelled_order_comes_with_its_zero_quantity_items_as_amazon_sent_them(
    fake: FakeAmazon,
) -> None:
    order = run(fake, lambda c: c.fetch_order("503-5550005-0000005"))
    assert order is not None
    assert order["OrderStatus"] == "Canceled" and "OrderTotal" not in order
    assert order["OrderItems"][0]["QuantityOrdered"] == 0


def test_an_id_that_cannot_be_an_amazon_order_id_is_refused_before_any_request(
    fake: FakeAmazon,
) -> None:
    with pytest.raises(InvalidInput):
        run(fake, lambda c: c.fetch_order("../../orders?x=1"))
    assert fake.calls == [] and fake.grants == 0


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"marketplace_ids": ""}, "marketplace_ids"),
        ({"marketplace_ids": "us"}, "marketplace_ids"),
        ({"client_secret": ""}, "client_secret"),
        ({"items_rate": "fast"}, "items_rate"),
        ({"orders_rate": "0"}, "orders_rate"),
    ],
)
def test_a_misconfigured_shop_fails_when_its_client_is_built(
    fake: FakeAmazon, changes: dict[str, str], missing: str
) -> None:
    async def build() -> None:
        async with aiohttp.ClientSession() as session:
            Client(shop("http://127.0.0.1:9", fake, **changes), session, Clock())

    with pytest.raises(ConfigurationError) as caught:
        asyncio.run(build())
    assert missing in str(caught.value)


def test_a_shop_without_marketplace_ids_is_told_how_to_add_them(fake: FakeAmazon) -> None:
    config = shop("http://127.0.0.1:9", fake)
    config = ShopConfig(
        config.channel,
        config.shop,
        config.credentials,
        {k: v for k, v in config.options.items() if k != "marketplace_ids"},
    )

    async def build() -> Any:
        async with aiohttp.ClientSession() as session:
            return Client(config, session, Clock())

    with pytest.raises(ConfigurationError, match="--option marketplace_ids=VALUE"):
        asyncio.run(build())
