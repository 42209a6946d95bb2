"""A fake WeChat Channels shop API: stable tokens, the order list by update time, order/get.

It answers like api.weixin.qq.com: always HTTP 200 with an `errcode`. Tokens come from
`POST /cgi-bin/stable_token` (40013 wrong appid, 40125 wrong secret) and expire; a call with an
unknown token gets 40001, with an expired one 42001. The list refuses an update_time_range wider
than 7 days or a page_size over 100 (40097 invalid args, assumed) and pages with an opaque
`next_key`; order/get answers 100002 (assumed) for an id it does not know. `throttle_next` calls
are refused with `throttle_code` (45009 daily quota by default), `busy_next` with -1.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parents[1] / "fixtures" / "wechat"
SEVEN_DAYS_S = 7 * 24 * 3600


def fixture_orders() -> dict[str, dict[str, Any]]:
    """The `order` objects of the WeChat fixtures, by order id."""
    orders = {}
    for path in sorted(FIXTURES.glob("*.json")):
        order = json.loads(path.read_text(encoding="utf-8"))["order"]
        orders[order["order_id"]] = order
    return orders


@dataclass
class FakeWeChat:
    appid: str = "wx0fake0shop0app"
    appsecret: str = "fake-app-secret"
    orders: dict[str, dict[str, Any]] = field(default_factory=fixture_orders)
    page_cap: int = 100  # the most ids one page holds, whatever page_size asks
    token_ttl_s: int = 7200
    now: Callable[[], float] = time.time
    throttle_next: int = 0
    throttle_code: int = 45009
    busy_next: int = 0
    token_calls: int = 0
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (Unix s)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (the next call with one gets 42001)."""
        self.tokens = {token: 0.0 for token in self.tokens}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/cgi-bin/stable_token", self.stable_token)
        app.router.add_post("/channels/ec/order/list/get", self.order_list)
        app.router.add_post("/channels/ec/order/get", self.order_get)
        return app

    async def stable_token(self, request: web.Request) -> web.Response:
        self.token_calls += 1
        body = await request.json()
        if body.get("grant_type") != "client_credential":
            return error(40002, "invalid grant_type")
        if body.get("appid") != self.appid:
            return error(40013, "invalid appid")
        if body.get("secret") != self.appsecret:
            return error(40125, "invalid appsecret")
        refused = self.refusal()
        if refused is not None:
            return refused
        # Normal mode: a token still valid is handed out again rather than replaced.
        live = [t for t, expiry in self.tokens.items() if expiry > self.now()]
        token = live[0] if live and not body.get("force_refresh") else secrets.token_hex(16)
        self.tokens[token] = self.tokens.get(token) or self.now() + self.token_ttl_s
        left = int(self.tokens[token] - self.now())
        return web.json_response({"access_token": token, "expires_in": left})

    async def order_list(self, request: web.Request) -> web.Response:
        body, refused = await self.authorized(request)
        if refused is not None:
            return refused
        span = body.get("update_time_range")
        size = body.get("page_size", 10)
        if not isinstance(span, Mapping) or not isinstance(size, int) or not 0 < size <= 100:
            return error(40097, "invalid args")
        start, end = span.get("start_time"), span.get("end_time")
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= end - start:
            return error(40097, "invalid args")
        if end - start > SEVEN_DAYS_S:
            return error(40097, "invalid args: time range over 7 days")
        matching = sorted((o["update_time"], i) for i, o in self.orders.items()
                          if start <= o["update_time"] <= end)
        offset = decode_key(body.get("next_key") or "")
        if offset is None:
            return error(40097, "invalid args: next_key")
        chunk = matching[offset:offset + min(size, self.page_cap)]
        after = offset + len(chunk)
        return web.json_response({
            "errcode": 0, "errmsg": "ok", "order_id_list": [i for _, i in chunk],
            "next_key": encode_key(after), "has_more": after < len(matching),
        })

    async def order_get(self, request: web.Request) -> web.Response:
        body, refused = await self.authorized(request)
        if refused is not None:
            return refused
        order = self.orders.get(str(body.get("order_id")))
        if order is None:
            return error(100002, "order not exist")
        return web.json_response({"errcode": 0, "errmsg": "ok", "order": order})

    async def authorized(self, request: web.Request
                         ) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        self.calls.append((request.path, body))
        token = request.query.get("access_token")
        if not token:
            return body, error(41001, "access_token missing")
        if token not in self.tokens:
            return body, error(40001, "invalid credential, access_token is invalid or not latest")
        if self.tokens[token] <= self.now():
            return body, error(42001, "access_token expired")
        return body, self.refusal()

    def refusal(self) -> web.Response | None:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return error(self.throttle_code, "reach max api daily quota limit")
        if self.busy_next > 0:
            self.busy_next -= 1
            return error(-1, "system error")
        return None


def error(code: int, message: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": f"{message} rid: 0fake-0rid"})


def encode_key(offset: int) -> str:
    return f"nk-{offset:08x}"


def decode_key(key: str) -> int | None:
    if not key:
        return 0
    try:
        return int(key.removeprefix("nk-"), 16) if key.startswith("nk-") else None
    except ValueError:
        return None
