"""Douyin shop (抖店) open API: request signing and the pull client (order.searchList/orderDetail).

The contract, as the official SDKs use it (doudian-sdk-golang 1.1.0 `core/doudian_op_api_client.go`
and `utils/sign_util.go`): POST `{base}/order/searchList` with `app_key`, `method`,
`access_token`, `timestamp` (Unix seconds), `v=2`, `sign_method` and `sign` in the query and the
business parameters as `param_json` in the body; the answer is
`{code, msg, sub_code, sub_msg, log_id, data}` with `code` 10000 on success. Error codes are the
platform's base table (op.jinritemai.com guide-docs/212/1427).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

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
from ingest.wrappers import order_array, order_object
from schemas.errors import ConfigurationError, InvalidInput, TransientError

BASE_URL = "https://openapi-fxg.jinritemai.com"
VERSION = "2"
SUCCESS = 10000
SIGN_METHODS = ("hmac-sha256", "md5")
SEARCH, DETAIL = "order.searchList", "order.orderDetail"
PAGE_SIZE = 100  # the most order.searchList serves per page (isv.parameter-invalid:20008)
# No quota for these APIs is public (each app sees its own in the console), so stay modest by
# default; the shop option `rate_per_s` (whole requests per second) overrides it.
RATE_PER_S = "5"
TIMEOUT = aiohttp.ClientTimeout(total=30)
T = TypeVar("T")

THROTTLED = 60000  # 触发限流，请稍后重试 (sub_code isp.traffic-limited:...)
UNAVAILABLE = frozenset({"20000", "20001"})  # 服务不可用 / 内部服务超时: "retry 3-5 times in 30 s"
# order.orderDetail answers these when the platform is busy; its docs say retry.
BUSY_SUB_CODES = frozenset(
    {"isv.business-failed:20004", "isv.business-failed:20045", "isv.business-failed:20055"}
)
# order.orderDetail: 订单不存在 / 查询订单不存在 / 订单不是该店铺下的订单 — nothing to fetch here.
NOT_FOUND_SUB_CODES = frozenset(
    {
        "isv.parameter-invalid:20001",
        "isv.business-failed:20001",
        "isv.parameter-invalid:20014",
        "isv.business-failed:20015",
    }
)


def param_json(params: Mapping[str, Any]) -> str:
    """The business parameters as Douyin signs them: keys sorted at every level, no spaces,
    non-ASCII as is (the Go SDK re-encodes through a map with HTML escaping off)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign(
    app_key: str,
    secret: str,
    method: str,
    param_json: str,
    timestamp: str | int,
    sign_method: str = "hmac-sha256",
) -> str:
    """The request `sign`: secret-wrapped `app_key…method…param_json…timestamp…v2`, hashed with
    HMAC-SHA256 keyed by the secret or plain MD5, lowercase hex."""
    text = (
        f"{secret}app_key{app_key}method{method}param_json{param_json}"
        f"timestamp{timestamp}v{VERSION}{secret}"
    ).encode()
    if sign_method == "hmac-sha256":
        return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()
    if sign_method == "md5":
        return hashlib.md5(text).hexdigest()  # noqa: S324 - Douyin's own signature scheme
    raise ConfigurationError(
        f"unknown Douyin sign_method {sign_method!r}; use one of {', '.join(SIGN_METHODS)}"
    )


def error_text(document: Mapping[str, Any]) -> str:
    """A failed answer in one line, with the log id Douyin support asks for."""
    text = f"Douyin API error {document.get('code')}: {document.get('msg') or 'no message'}"
    sub_code, sub_msg = document.get("sub_code"), document.get("sub_msg")
    if sub_code or sub_msg:
        text += f" ({sub_code}: {sub_msg})" if sub_code else f" ({sub_msg})"
    log_id = document.get("log_id")
    return f"{text} [log_id {log_id}]" if log_id else text


class Client:
    """Pulls one Douyin shop's orders by update time.

    `shop` needs credentials `app_key`, `app_secret`, `access_token`; options `base_url`
    (default the production gateway), `sign_method` (`hmac-sha256` or `md5`), `page_size`
    (≤ 100) and `rate_per_s`. `session` is shared by the poll process; `clock` stamps requests.
    """

    channel: ClassVar[str] = "douyin"
    # order.searchList documents no limit on the update-time span, only that it reaches back 90
    # days (isv.parameter-invalid:20022) and pages at most 50,000 orders deep (…:20013). A day
    # keeps an ordinary shop far below that depth.
    max_window: ClassVar[timedelta] = timedelta(days=1)
    end_lag: ClassVar[timedelta] = timedelta(0)

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.shop = shop
        self.session = session
        self.clock = clock
        self.base_url = shop.option("base_url", BASE_URL).rstrip("/")
        self.sign_method = shop.option("sign_method", SIGN_METHODS[0])
        if self.sign_method not in SIGN_METHODS:
            raise ConfigurationError(f"shop douyin/{shop.shop}: option sign_method must be one "
                                     f"of {', '.join(SIGN_METHODS)}, got {self.sign_method!r}")
        self.page_size = _int_option(shop, "page_size", str(PAGE_SIZE), 1, PAGE_SIZE)
        rate = _int_option(shop, "rate_per_s", RATE_PER_S, 1, 10_000)
        self.limiter = RateLimiter(rate, rate)
        self.app_key = shop.secret("app_key")
        self._secret = shop.secret("app_secret")
        self._token = shop.secret("access_token")

    async def fetch(self, window: Window, page: str | None) -> Page:
        """One page of the orders updated in the window.

        Offset pages over a list sorted by update time lose an order whenever an order already
        read is updated again and leaves the window (everything behind it moves up a place). So
        the first call learns the total from page 0, then the pages are read from the last one
        back to page 0: an order leaving the window then only moves orders already read onto
        pages still to come, and is itself read in a later window.
        """
        number = 0 if page is None else int(page)
        data = await self._call(SEARCH, self._search(window, number))
        orders = _orders(data.get("shop_order_list") or [])
        if page is None:
            total = _count(data.get("total"), "data.total")
            last = max(0, math.ceil(total / self.page_size) - 1)
            return Page(orders, str(last) if last > 0 else None)
        return Page(orders, str(number - 1) if number > 0 else None)

    async def fetch_order(self, native_id: str) -> Mapping[str, Any] | None:
        """The shop order by its `order_id`, None if Douyin does not know it for this shop."""
        try:
            data = await self._call(DETAIL, {"shop_order_id": native_id})
        except ChannelError as e:
            if e.code in NOT_FOUND_SUB_CODES:
                return None
            raise
        return _order(data.get("shop_order_detail"), "data.shop_order_detail")

    def _search(self, window: Window, number: int) -> dict[str, Any]:
        # Whole seconds that cover [start, end): Douyin's end may be inclusive, and one second
        # read twice is harmless where one second missed is not.
        return {
            "update_time_start": math.floor(window.start.timestamp()),
            "update_time_end": math.ceil(window.end.timestamp()),
            "order_by": "update_time",
            "order_asc": True,
            "page": number,
            "size": self.page_size,
        }

    async def _call(self, method: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """One signed call; the answer's `data`, or the answer's error as ours."""
        await self.limiter.acquire()
        body = param_json(params)
        timestamp = str(int(self.clock().timestamp()))
        query = {
            "app_key": self.app_key,
            "method": method,
            "access_token": self._token,
            "timestamp": timestamp,
            "v": VERSION,
            "sign_method": self.sign_method,
            "sign": sign(self.app_key, self._secret, method, body, timestamp, self.sign_method),
        }
        url = f"{self.base_url}/{method.replace('.', '/')}"
        try:
            async with self.session.post(
                url, params=query, data=body.encode(), timeout=TIMEOUT,
                headers={"Content-Type": "application/json"},
            ) as response:
                document = await read_json(response, f"Douyin {method}")
        except (TimeoutError, aiohttp.ClientError) as e:
            # aiohttp puts the request URL, access_token included, into some of its messages.
            raise TransientError(f"Douyin {method}: {self._scrub(str(e) or type(e).__name__)}"
                                 ) from None
        return _data(document, method)

    def _scrub(self, text: str) -> str:
        for secret in (self._token, self._secret):
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
        return text


def _data(document: Any, method: str) -> Mapping[str, Any]:
    if not isinstance(document, Mapping) or "code" not in document:
        raise ChannelError(f"Douyin {method} answered without a code: {str(document)[:200]}")
    code = str(document["code"])
    if code == str(SUCCESS):
        data = document.get("data")
        if not isinstance(data, Mapping):
            raise ChannelError(f"Douyin {method} answered success without a data object")
        return data
    text = f"{method}: {error_text(document)}"
    sub_code = str(document.get("sub_code") or "") or None
    if code == str(THROTTLED):
        raise Throttled(text)
    if code in UNAVAILABLE or sub_code in BUSY_SUB_CODES:
        raise TransientError(text)
    raise ChannelError(text, code=sub_code or code)


def _orders(value: Any) -> list[Mapping[str, Any]]:
    return _shaped(lambda: order_array(value, "data.shop_order_list", _order))


def _order(value: Any, path: str) -> Mapping[str, Any]:
    return _shaped(lambda: order_object(value, path, label="a Douyin shop order",
                                        id_key="order_id"))


def _shaped(read: Callable[[], T]) -> T:
    """A success answer Douyin should never send stops the shop, naming what was wrong."""
    try:
        return read()
    except InvalidInput as e:
        raise ChannelError(f"Douyin answered an unexpected shape: {e}") from e


def _count(value: Any, path: str) -> int:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ChannelError(f"Douyin answered an unexpected shape: {path}: expected a count, "
                       f"got {value!r}")


def _int_option(shop: ShopConfig, name: str, default: str, low: int, high: int) -> int:
    text = shop.option(name, default)
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigurationError(f"shop {shop.channel}/{shop.shop}: option {name} must be a whole "
                                 f"number from {low} to {high}, got {text!r}")
    return int(text)
