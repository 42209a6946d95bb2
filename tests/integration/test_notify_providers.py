from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from ingest.pull import ChannelError, Throttled
from notify.providers.aliyun_sms import AliyunSms
from notify.providers.merchant_webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    MerchantWebhook,
    verify,
)
from notify.providers.wechat_message import WeChatMessages
from schemas.errors import TransientError
from tests.channel_servers.aliyun_sms import FakeAliyunSms
from tests.channel_servers.base import RunningServer, serve
from tests.channel_servers.wechat_message import FakeWeChatMessages

T = TypeVar("T")
NOW = datetime(2026, 3, 16, 4, 0, 30, tzinfo=UTC)
PARAMS = {"order": "TB-20260316-0001", "units": "3"}


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run(work: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await work(session)

    return asyncio.run(main())


# --- Aliyun SMS -------------------------------------------------------------------------------


@pytest.fixture
def sms() -> FakeAliyunSms:
    return FakeAliyunSms(now=NOW.timestamp)


@pytest.fixture
def sms_server(sms: FakeAliyunSms) -> Iterator[RunningServer]:
    with serve(sms.app()) as running:
        yield running


def send_sms(
    server: RunningServer,
    fake: FakeAliyunSms,
    secret: str | None = None,
    out_id: str = "notify:o-1:allocated:sms",
    phone: str = "13800138000",
    times: int = 1,
) -> list[str]:
    async def work(session: aiohttp.ClientSession) -> list[str]:
        client = AliyunSms(
            server.url, fake.access_key_id, secret or fake.access_key_secret, session, Clock()
        )
        return [
            await client.send(phone, "茶叶旗舰店", "SMS_480120001", PARAMS, out_id)
            for _ in range(times)
        ]

    return run(work)


def test_an_sms_is_sent_with_a_v3_signature_the_server_recomputes(
    sms_server: RunningServer, sms: FakeAliyunSms
) -> None:
    [biz] = send_sms(sms_server, sms)

    assert biz
    [params] = sms.sent
    assert params["PhoneNumbers"] == "13800138000"
    assert params["SignName"] == "茶叶旗舰店"
    assert params["TemplateCode"] == "SMS_480120001"
    assert json.loads(params["TemplateParam"]) == PARAMS
    assert params["OutId"] == "notify:o-1:allocated:sms"


def test_a_wrong_secret_is_refused_with_signature_does_not_match(
    sms_server: RunningServer, sms: FakeAliyunSms
) -> None:
    with pytest.raises(ChannelError) as refused:
        send_sms(sms_server, sms, secret="not-the-secret")

    assert refused.value.code == "SignatureDoesNotMatch"
    assert sms.sent == []


def test_a_business_limit_is_throttled(sms_server: RunningServer, sms: FakeAliyunSms) -> None:
    sms.throttle_next = 1

    with pytest.raises(Throttled):
        send_sms(sms_server, sms)


def test_a_5xx_is_transient(sms_server: RunningServer, sms: FakeAliyunSms) -> None:
    sms.busy_next = 1

    with pytest.raises(TransientError) as busy:
        send_sms(sms_server, sms)
    assert not isinstance(busy.value, Throttled)


def test_an_illegal_number_is_refused_with_aliyuns_code(
    sms_server: RunningServer, sms: FakeAliyunSms
) -> None:
    with pytest.raises(ChannelError) as refused:
        send_sms(sms_server, sms, phone="12345")

    assert refused.value.code == "isv.MOBILE_NUMBER_ILLEGAL"


def test_a_replayed_out_id_reaches_the_server_which_records_it(
    sms_server: RunningServer, sms: FakeAliyunSms
) -> None:
    first, second = send_sms(sms_server, sms, times=2)

    assert first != second  # Aliyun sends twice: the send log must prevent this
    assert sms.replayed_out_ids == ["notify:o-1:allocated:sms"]


def test_an_unreachable_endpoint_is_transient() -> None:
    async def work(session: aiohttp.ClientSession) -> str:
        client = AliyunSms("http://127.0.0.1:9", "ak", "sk", session, Clock())
        return await client.send("13800138000", "s", "SMS_1", {}, "x")

    with pytest.raises(TransientError):
        run(work)


# --- WeChat -----------------------------------------------------------------------------------

OPENID = "oFake-buyer-openid-0001"
SHIPPED = {"thing1": "您的订单已发货", "character_string2": "TB-20260316-0001"}


@pytest.fixture
def wechat() -> FakeWeChatMessages:
    return FakeWeChatMessages(
        now=NOW.timestamp, followers={OPENID}, subscriptions={(OPENID, "TPL-shipped")}
    )


@pytest.fixture
def wechat_server(wechat: FakeWeChatMessages) -> Iterator[RunningServer]:
    with serve(wechat.app()) as running:
        yield running


def with_wechat(
    server: RunningServer,
    fake: FakeWeChatMessages,
    work: Callable[[WeChatMessages], Awaitable[T]],
    secret: str | None = None,
    clock: Clock | None = None,
) -> T:
    async def main(session: aiohttp.ClientSession) -> T:
        return await work(
            WeChatMessages(server.url, fake.appid, secret or fake.secret, session, clock or Clock())
        )

    return run(main)


def test_a_subscribe_message_is_sent_with_the_body_wechat_expects(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    with_wechat(
        wechat_server,
        wechat,
        lambda c: c.subscribe(OPENID, "TPL-shipped", SHIPPED, page="pages/order?id=1"),
    )

    [(kind, body)] = wechat.delivered
    assert kind == "subscribe"
    assert body == {
        "touser": OPENID,
        "template_id": "TPL-shipped",
        "page": "pages/order?id=1",
        "miniprogram_state": "formal",
        "lang": "zh_CN",
        "data": {
            "thing1": {"value": "您的订单已发货"},
            "character_string2": {"value": "TB-20260316-0001"},
        },
    }


def test_a_used_up_subscription_is_refused_with_43101(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    async def twice(client: WeChatMessages) -> None:
        await client.subscribe(OPENID, "TPL-shipped", SHIPPED)
        await client.subscribe(OPENID, "TPL-shipped", SHIPPED)

    with pytest.raises(ChannelError) as refused:
        with_wechat(wechat_server, wechat, twice)

    assert refused.value.code == "43101"
    assert len(wechat.delivered) == 1


def test_a_template_message_returns_its_msgid_and_reuses_the_token(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    async def two(client: WeChatMessages) -> list[int]:
        return [
            await client.template(
                OPENID, "TPL-shipped", SHIPPED, f"o-1:shipped:{n}", url="https://shop.example/o/1"
            )
            for n in range(2)
        ]

    first, second = with_wechat(wechat_server, wechat, two)

    assert first != second
    assert wechat.token_calls == 1
    kind, body = wechat.delivered[0]
    assert (kind, body["client_msg_id"], body["url"]) == (
        "template",
        "o-1:shipped:0",
        "https://shop.example/o/1",
    )


def test_a_replayed_client_msg_id_is_deduplicated_and_recorded_by_the_server(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    async def replay(client: WeChatMessages) -> list[int]:
        return [
            await client.template(OPENID, "TPL-shipped", SHIPPED, "o-1:shipped") for _ in range(2)
        ]

    first, second = with_wechat(wechat_server, wechat, replay)

    assert first == second
    assert len(wechat.delivered) == 1
    assert wechat.replayed_client_msg_ids == ["o-1:shipped"]


def test_an_expired_token_is_refreshed_once_and_the_send_goes_through(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    async def across_expiry(client: WeChatMessages) -> int:
        await client.template(OPENID, "TPL-shipped", SHIPPED, "a")
        wechat.expire_tokens()  # WeChat expired it before our cached expiry
        return await client.template(OPENID, "TPL-shipped", SHIPPED, "b")

    assert with_wechat(wechat_server, wechat, across_expiry)
    assert wechat.token_calls == 2
    assert len(wechat.delivered) == 2


def test_the_cached_token_is_replaced_before_it_expires(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    clock = Clock()

    async def later(client: WeChatMessages) -> None:
        await client.template(OPENID, "TPL-shipped", SHIPPED, "a")
        clock.now += timedelta(hours=2)
        wechat.now = clock.now.timestamp
        await client.template(OPENID, "TPL-shipped", SHIPPED, "b")

    with_wechat(wechat_server, wechat, later, clock=clock)
    assert wechat.token_calls == 2


def test_a_wrong_secret_is_refused_with_wechats_code(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    with pytest.raises(ChannelError) as refused:
        with_wechat(
            wechat_server,
            wechat,
            lambda c: c.subscribe(OPENID, "TPL-shipped", SHIPPED),
            secret="wrong",
        )

    assert refused.value.code == "40125"


def send_any(client: WeChatMessages) -> Awaitable[int]:
    return client.template(OPENID, "TPL-shipped", SHIPPED, "x")


@pytest.mark.parametrize("code", [45009, 45011])
def test_quota_and_frequency_limits_are_throttled(
    wechat_server: RunningServer, wechat: FakeWeChatMessages, code: int
) -> None:
    wechat.throttle_next, wechat.throttle_code = 1, code

    with pytest.raises(Throttled):
        with_wechat(wechat_server, wechat, send_any)


def test_system_busy_is_transient_and_a_bad_openid_a_channel_error(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    wechat.busy_next = 1
    with pytest.raises(TransientError):
        with_wechat(wechat_server, wechat, send_any)
    with pytest.raises(ChannelError) as refused:
        with_wechat(
            wechat_server, wechat, lambda c: c.template("oUnknown", "TPL-shipped", SHIPPED, "x")
        )
    assert refused.value.code == "40003"


def test_missing_template_keywords_are_refused(
    wechat_server: RunningServer, wechat: FakeWeChatMessages
) -> None:
    with pytest.raises(ChannelError) as refused:
        with_wechat(
            wechat_server, wechat, lambda c: c.template(OPENID, "TPL-shipped", {"thing1": "x"}, "x")
        )
    assert refused.value.code == "47003"


# --- Merchant webhook -------------------------------------------------------------------------

MERCHANT_SECRET = "merchant-shared-secret"


class Receiver:
    """A merchant's endpoint: verifies the signature, records events, answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], Any]] = []
        self.refused = 0
        self.answer = 204
        self.retry_after: str | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks/orderhub", self.hook)
        return app

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(MERCHANT_SECRET, body, request.headers.get(SIGNATURE_HEADER)):
            self.refused += 1
            return web.Response(status=401, text="bad signature")
        if self.answer >= 300:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.Response(status=self.answer, headers=headers)
        names = (EVENT_ID_HEADER, TIMESTAMP_HEADER)
        self.received.append(({n: request.headers[n] for n in names}, json.loads(body)))
        return web.Response(status=self.answer)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def hook_server(receiver: Receiver) -> Iterator[RunningServer]:
    with serve(receiver.app()) as running:
        yield running


def post_event(server: RunningServer, secret: str = MERCHANT_SECRET) -> None:
    async def work(session: aiohttp.ClientSession) -> None:
        hook = MerchantWebhook(f"{server.url}/hooks/orderhub", secret, session, Clock())
        await hook.send("evt-o-1-allocated", {"event": "allocated", "order_id": "o-1", "件": 3})

    run(work)


def test_a_signed_event_is_delivered_with_its_id_and_timestamp(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    post_event(hook_server)

    [(headers, payload)] = receiver.received
    assert headers == {
        EVENT_ID_HEADER: "evt-o-1-allocated",
        TIMESTAMP_HEADER: str(int(NOW.timestamp())),
    }
    assert payload == {"event": "allocated", "order_id": "o-1", "件": 3}


def test_a_wrong_secret_is_refused_by_the_receiver(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    with pytest.raises(ChannelError) as refused:
        post_event(hook_server, secret="wrong")

    assert refused.value.code == "401"
    assert receiver.refused == 1


def test_a_429_is_throttled_with_retry_after(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    receiver.answer, receiver.retry_after = 429, "7"

    with pytest.raises(Throttled) as slow:
        post_event(hook_server)
    assert slow.value.retry_after_s == 7.0


def test_a_503_is_transient(hook_server: RunningServer, receiver: Receiver) -> None:
    receiver.answer = 503

    with pytest.raises(TransientError):
        post_event(hook_server)
