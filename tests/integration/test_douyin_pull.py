from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest

from ingest import douyin
from ingest.pull import ChannelError, Page, ShopConfig, Throttled, Window
from normalize.douyin import map_order
from normalize.rates import RateTable
from schemas.errors import ConfigurationError, TransientError
from tests.channel_servers.base import serve
from tests.channel_servers.douyin import FakeDouyin, fixture_orders

APP_KEY, SECRET, TOKEN = "7001234567890123456", "douyin-secret-for-tests", "douyin-token-for-tests"
BASE = 1765760000  # 2025-12-15 08:53:20 +08:00
STEP = 600
NOW = datetime.fromtimestamp(BASE + 86_400, UTC)
WINDOW = Window(datetime.fromtimestamp(BASE - 0.5, UTC),
                datetime.fromtimestamp(BASE + 8 * STEP, UTC))
T = TypeVar("T")


def restamped() -> list[dict[str, Any]]:
    orders = sorted(fixture_orders(), key=lambda o: o["order_id"])
    for i, order in enumerate(orders):
        order["update_time"] = BASE + i * STEP
    return orders


@pytest.fixture
def fake() -> FakeDouyin:
    return FakeDouyin(APP_KEY, SECRET, TOKEN, restamped(), lambda: NOW)


def call(fake: FakeDouyin, work: Callable[[douyin.Client], Awaitable[T]], *,
         secret: str = SECRET, clock: datetime = NOW, base_url: str | None = None,
         **options: str) -> T:
    with serve(fake.app()) as server:
        shop = ShopConfig("douyin", "douyin-4463798",
                          {"app_key": APP_KEY, "app_secret": secret, "access_token": TOKEN},
                          {"base_url": base_url or server.url, "rate_per_s": "1000", **options})

        async def run() -> T:
            async with aiohttp.ClientSession() as session:
                return await work(douyin.Client(shop, session, lambda: clock))

        return asyncio.run(run())


def every_page(window: Window = WINDOW) -> Callable[[douyin.Client], Awaitable[list[Page]]]:
    async def work(client: douyin.Client) -> list[Page]:
        pages = [await client.fetch(window, None)]
        while pages[-1].next is not None:
            pages.append(await client.fetch(window, pages[-1].next))
        return pages
    return work


def ids(pages: list[Page]) -> list[str]:
    return [str(order["order_id"]) for page in pages for order in page.orders]


def refusal(fake: FakeDouyin, work: Callable[[douyin.Client], Awaitable[Any]],
            error: type[Exception], **kwargs: Any) -> Any:
    with pytest.raises(error) as caught:
        call(fake, work, **kwargs)
    return caught.value


def test_a_window_is_read_in_three_pages_from_the_last_back_to_the_first(
    fake: FakeDouyin,
) -> None:
    pages = call(fake, every_page(), page_size="3")
    assert sorted(set(ids(pages))) == sorted(fake.orders)
    assert [c["params"]["page"] for c in fake.calls] == [0, 2, 1, 0]
    assert [page.next for page in pages] == ["2", "1", "0", None]
    params = fake.calls[0]["params"]
    assert (params["update_time_start"], params["update_time_end"]) == (BASE - 1, BASE + 8 * STEP)
    assert (params["order_by"], params["order_asc"], params["size"]) == ("update_time", True, 3)
    assert fake.calls[0]["query"]["sign_method"] == "hmac-sha256"
    assert fake.calls[0]["query"]["timestamp"] == str(int(NOW.timestamp()))


def test_pulled_orders_keep_19_digit_ids_and_big_sku_ids_exact_and_map(fake: FakeDouyin) -> None:
    pages = call(fake, every_page())
    orders = {str(o["order_id"]): o for page in pages for o in page.orders}
    skus = [sku["sku_id"] for sku in orders["6930412883651765432"]["sku_order_list"]]
    assert skus == [3598472810345716737, 3598472810345717003]
    mapped = [map_order(o, shop="douyin-4463798", rates=RateTable.from_mapping({}))
              for o in orders.values()]
    assert {m.id for m in mapped} == {f"DY{i}" for i in fake.orders}


def test_an_order_updated_while_paging_is_not_lost(fake: FakeDouyin) -> None:
    first = min(fake.orders.values(), key=lambda o: o["update_time"])

    def update_after_the_first_page(server: FakeDouyin) -> None:
        if len(server.calls) == 1:
            server.touch(str(first["order_id"]), BASE + 9 * STEP)

    fake.after_call = update_after_the_first_page
    pages = call(fake, every_page(), page_size="3")
    assert set(ids(pages)) == set(fake.orders)


def test_md5_signing_is_accepted_too(fake: FakeDouyin) -> None:
    pages = call(fake, every_page(), sign_method="md5")
    assert len(ids(pages)) == 8
    assert fake.calls[0]["query"]["sign_method"] == "md5"


def test_a_forged_secret_is_refused_with_douyins_signature_error(fake: FakeDouyin) -> None:
    error = refusal(fake, every_page(), ChannelError, secret="not-the-secret")
    assert error.code == "isv.signature-invalid"
    assert "签名校验失败" in str(error) and "log_id" in str(error)
    assert TOKEN not in str(error) and "not-the-secret" not in str(error)
    assert fake.calls == []


def test_a_window_reaching_past_douyins_90_days_is_refused(fake: FakeDouyin) -> None:
    old = NOW - timedelta(days=91)
    error = refusal(fake, every_page(Window(old, old + timedelta(days=1))), ChannelError)
    assert error.code == "isv.parameter-invalid:20022"


def test_a_request_with_a_stale_timestamp_is_refused(fake: FakeDouyin) -> None:
    error = refusal(fake, every_page(), ChannelError, clock=NOW - timedelta(hours=1))
    assert error.code == "isv.timestamp-invalid"


def test_douyins_rate_limit_answer_becomes_throttled_and_the_next_call_succeeds(
    fake: FakeDouyin,
) -> None:
    fake.throttle_next = 1

    async def work(client: douyin.Client) -> Page:
        with pytest.raises(Throttled) as caught:
            await client.fetch(WINDOW, None)
        assert "60000" in str(caught.value) and caught.value.retry_after_s is None
        return await client.fetch(WINDOW, None)

    assert len(call(fake, work).orders) == 8


def test_douyin_system_busy_is_transient_not_a_channel_error(fake: FakeDouyin) -> None:
    fake.busy_next = 1
    error = refusal(fake, every_page(), TransientError)
    assert not isinstance(error, Throttled)
    assert "isp.service-error:20005" in str(error)


def test_fetch_order_returns_the_full_order_by_its_id(fake: FakeDouyin) -> None:
    async def work(client: douyin.Client) -> Any:
        return await client.fetch_order("6930412883651765432")

    order = call(fake, work)
    assert order["order_id"] == "6930412883651765432"
    assert order["sku_order_list"][0]["sku_id"] == 3598472810345716737
    assert fake.calls[0]["method"] == "order.orderDetail"
    assert fake.calls[0]["params"] == {"shop_order_id": "6930412883651765432"}


def test_fetch_order_of_an_order_douyin_does_not_know_is_none(fake: FakeDouyin) -> None:
    async def work(client: douyin.Client) -> Any:
        return await client.fetch_order("6930000000000000000")

    assert call(fake, work) is None


def test_a_network_failure_is_transient_and_names_no_secret(fake: FakeDouyin) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    error = refusal(fake, every_page(), TransientError, base_url=closed)
    assert TOKEN not in str(error) and SECRET not in str(error)
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize(("option", "value"), [("sign_method", "sha1"), ("page_size", "101")])
def test_a_bad_option_is_refused_when_the_client_is_built(option: str, value: str) -> None:
    shop = ShopConfig("douyin", "douyin-4463798",
                      {"app_key": APP_KEY, "app_secret": SECRET, "access_token": TOKEN},
                      {option: value})

    async def build() -> None:
        async with aiohttp.ClientSession() as session:
            douyin.Client(shop, session, lambda: NOW)

    with pytest.raises(ConfigurationError, match=option):
        asyncio.run(build())
