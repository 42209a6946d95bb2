"""WeChat Channels shop pull client: stable access token, order ids by update time, then order/get.

Contract (developers.weixin.qq.com/doc/store/shop/API/channels-shop-order/api_getorderlist and
.../api/basic/api_getstableaccesstoken):

- `POST /cgi-bin/stable_token` `{grant_type: client_credential, appid, secret}` → `{access_token,
  expires_in}`. The stable token is chosen over `GET /cgi-bin/token` because fetching it again does
  not invalidate the token other processes of the hub hold, and the secret travels in the body,
  never in a URL that proxies and error messages might log.
- `POST /channels/ec/order/list/get?access_token=…` `{update_time_range: {start_time, end_time},
  page_size ≤ 100, next_key}` → `{order_id_list, next_key, has_more}`; the range spans at most 7
  days. Then `POST /channels/ec/order/get` `{order_id}` → `{order: {…}}` for each id.
- Every answer carries `errcode` (0 = ok): 40001/40014/42001 the token is stale (fetched again
  once), 45009 the daily quota and 45011 the minute quota are spent, -1 the system is busy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import aiohttp

from ingest.pull import (
    ChannelError,
    Clock,
    Page,
    RateLimiter,
    ShopConfig,
    Throttled,
    Window,
    read_json,
)
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError, TransientError

BASE_URL = "https://api.weixin.qq.com"
TOKEN_PATH = "/cgi-bin/stable_token"  # noqa: S105 - a path, not a password
LIST_PATH = "/channels/ec/order/list/get"
GET_PATH = "/channels/ec/order/get"
PAGE_SIZE = 100
TOKEN_REJECTED = frozenset({40001, 40014, 42001})
BUSY = -1
DAILY_QUOTA = 45009
MINUTE_QUOTA = 45011
# Assumed: the public docs do not list order/get's "no such order" code; any other code is a
# ChannelError, so a wrong guess stops the shop loudly instead of dropping an order.
ORDER_NOT_FOUND = frozenset({100002})
# WeChat publishes no per-API rate for the shop APIs (only a daily quota, 45009); the community
# answers quote 500-800 calls per 30 s for the older shop APIs, so 10/s stays well inside.
RATE_PER_S = "10"
BURST = 20
TIMEOUT_S = "30"
# Token lifetimes are 7200 s; renew a little early so a call never carries a token that expires
# on its way (WeChat itself renews stable tokens 5 minutes before they expire).
TOKEN_MARGIN_S = 300


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: datetime


class Client:
    """Pulls one WeChat Channels shop's orders modified in a window.

    `shop` needs credentials `appid` and `appsecret`; options `base_url` (default the production
    API), `rate_per_s` and `timeout_s`. `session` is the poller's shared aiohttp session; `clock`
    gives "now" for token expiry and quota resets.
    """

    channel: ClassVar[str] = "wechat"
    # update_time_range: "距离start_time不可超过7天" (at most 7 days apart).
    max_window: ClassVar[timedelta] = timedelta(days=7)
    end_lag: ClassVar[timedelta] = timedelta(0)

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        for name in ("appid", "appsecret"):
            shop.secret(name)  # a missing credential fails here, before the first request
        self.shop = shop
        self.session = session
        self.clock = clock
        self.base_url = shop.option("base_url", BASE_URL).rstrip("/")
        self.limiter = RateLimiter(_number(shop, "rate_per_s", RATE_PER_S), BURST)
        self.timeout = aiohttp.ClientTimeout(total=_number(shop, "timeout_s", TIMEOUT_S))
        self.token: _Token | None = None
        self.token_lock = asyncio.Lock()

    async def fetch(self, window: Window, page: str | None) -> Page:
        """One page of order ids updated in the window, each fetched in full."""
        body = {
            "update_time_range": {"start_time": _unix(window.start),
                                  "end_time": _unix(window.end)},
            "page_size": PAGE_SIZE,
            "next_key": page or "",
        }
        answer = await self._call(LIST_PATH, body, "order list")
        ids = _order_ids(answer.get("order_id_list"))
        return Page(await self._listed_orders(ids), _next_key(answer))

    async def fetch_order(self, native_id: str) -> Mapping[str, Any] | None:
        """The order as order/get returns it (the `order` object), None if WeChat has no such id."""
        answer = await self._call(GET_PATH, {"order_id": native_id}, f"order {native_id}",
                                  absent=ORDER_NOT_FOUND)
        if _code(answer) in ORDER_NOT_FOUND:
            return None
        order = answer.get("order")
        if not isinstance(order, Mapping) or "order_id" not in order:
            raise ChannelError(f"order {native_id}: order/get answered without an order")
        return order

    async def _listed_orders(self, ids: list[str]) -> list[Mapping[str, Any]]:
        # All requests of a page run (paced by the limiter) before the first failure is raised,
        # so no task outlives the page.
        found = await asyncio.gather(*(self._listed(i) for i in ids), return_exceptions=True)
        for result in found:
            if isinstance(result, BaseException):
                raise result
        return [order for order in found if not isinstance(order, BaseException)]

    async def _listed(self, native_id: str) -> Mapping[str, Any]:
        order = await self.fetch_order(native_id)
        if order is None:  # listed a moment ago: the detail index lags, try the page again
            raise TransientError(f"order {native_id} is listed but order/get does not know it")
        return order

    async def _call(self, path: str, body: Mapping[str, Any], what: str,
                    absent: frozenset[int] = frozenset()) -> Mapping[str, Any]:
        token = await self._token()
        answer = await self._post(path, token, body, what)
        if _code(answer) in TOKEN_REJECTED:
            token = await self._token(stale=token)
            answer = await self._post(path, token, body, what)
        if _code(answer) not in absent:
            _check(answer, what, self.clock())
        return answer

    async def _token(self, stale: str | None = None) -> str:
        """The cached token, fetched again when expired or when WeChat refused `stale`."""
        async with self.token_lock:
            held = self.token
            now = self.clock()
            if held is not None and held.value != stale and now < held.expires_at:
                return held.value
            self.token = await self._new_token(now)
            return self.token.value

    async def _new_token(self, now: datetime) -> _Token:
        body = {"grant_type": "client_credential", "appid": self.shop.secret("appid"),
                "secret": self.shop.secret("appsecret"), "force_refresh": False}
        answer = await self._post(TOKEN_PATH, None, body, "access token")
        _check(answer, "access token", now,
               hint="; check the shop's appid/appsecret and the API IP whitelist")
        value, lifetime = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(value, str) or not value or not isinstance(lifetime, int):
            raise TransientError("access token: answer without access_token/expires_in")
        margin = min(TOKEN_MARGIN_S, lifetime // 2)
        return _Token(value, now + timedelta(seconds=lifetime - margin))

    async def _post(self, path: str, token: str | None, body: Mapping[str, Any], what: str
                    ) -> Mapping[str, Any]:
        await self.limiter.acquire()
        params = {"access_token": token} if token else None
        try:
            async with self.session.post(
                f"{self.base_url}{path}", params=params, data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"}, timeout=self.timeout,
            ) as response:
                answer = await read_json(response, what)
        except (aiohttp.ClientError, TimeoutError) as e:
            # Not chained: aiohttp's message carries the URL, and with it the access token.
            raise TransientError(f"{what}: {type(e).__name__}: {_redact(str(e), token)}"
                                 ) from None
        if not isinstance(answer, Mapping):
            raise TransientError(f"{what}: answer is not a JSON object")
        return answer


def _check(answer: Mapping[str, Any], what: str, now: datetime, hint: str = "") -> None:
    """Raise what a non-zero errcode means for the poller."""
    code = _code(answer)
    if code == 0:
        return
    message = f"{what}: WeChat errcode {code}: {answer.get('errmsg')!r}"
    if code == MINUTE_QUOTA:
        raise Throttled(message, retry_after_s=float(60 - now.second))
    if code == DAILY_QUOTA:
        raise Throttled(message, retry_after_s=_until_beijing_midnight(now))
    if code == BUSY:
        raise TransientError(message)
    raise ChannelError(message + hint, code=str(code))


def _code(answer: Mapping[str, Any]) -> int:
    code = answer.get("errcode", 0)
    if isinstance(code, bool) or not isinstance(code, int | str):
        raise TransientError(f"unexpected errcode {code!r}")
    try:
        return int(code)
    except ValueError as e:
        raise TransientError(f"unexpected errcode {code!r}") from e


def _order_ids(value: Any) -> list[str]:
    """The listed ids as exact digit strings (they exceed 2^53; JSON numbers are kept exact)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ChannelError(f"order list: order_id_list is {type(value).__name__}, not an array")
    ids = []
    for item in value:
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str) or not text.isascii() or not text.isdigit():
            raise ChannelError(f"order list: not an order id: {item!r}")
        ids.append(text)
    return ids


def _next_key(answer: Mapping[str, Any]) -> str | None:
    if answer.get("has_more") is not True:
        return None
    key = answer.get("next_key")
    if not isinstance(key, str) or not key:
        # Asking for the first page again would loop forever.
        raise ChannelError("order list: has_more without a next_key")
    return key


def _unix(moment: datetime) -> int:
    # Floor both ends: ceiling the end could widen an exact 7-day window past the limit, and the
    # second it leaves out is the next window's first.
    return int(moment.timestamp() // 1)


def _until_beijing_midnight(now: datetime) -> float:
    """Daily quotas reset at midnight Beijing time."""
    local = now.astimezone(SHANGHAI)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - local).total_seconds()


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _number(shop: ShopConfig, name: str, default: str) -> float:
    value = shop.option(name, default)
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if number <= 0:
        raise ConfigurationError(f"shop {shop.channel}/{shop.shop}: option {name} must be a "
                                 f"positive number, got {value!r}")
    return number
