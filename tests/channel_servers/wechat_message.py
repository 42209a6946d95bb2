"""A fake WeChat message API: stable tokens, subscribe/send and template/send.

It answers like api.weixin.qq.com: always HTTP 200 with an `errcode`. Tokens come from
`POST /cgi-bin/stable_token` (40013 wrong appid, 40125 wrong secret) and expire; a call with an
unknown token gets 40001, with an expired one 42001. subscribe/send needs a subscription the
buyer granted in `subscriptions` (one-shot: used up by the send, else 43101); template/send
needs a follower in `followers` (else 40003). Both check the body: touser, template_id, the
template's keywords each as `{"value": str}` (47003 otherwise); subscribe also `lang` and
`miniprogram_state` (47003 assumed). template/send de-duplicates on (openid, client_msg_id):
a repeat is not delivered again and answers the first msgid (assumed; WeChat documents the
de-duplication, not the answer), and is recorded in `replayed_client_msg_ids`.
`throttle_next` sends are refused with `throttle_code` (45009), `busy_next` with -1.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

STATES = {"developer", "trial", "formal"}


@dataclass
class FakeWeChatMessages:
    appid: str = "wx0fake0notify0app"
    secret: str = "fake-notify-secret"
    templates: dict[str, set[str]] = field(
        default_factory=lambda: {"TPL-shipped": {"thing1", "character_string2"}}
    )
    subscriptions: set[tuple[str, str]] = field(default_factory=set)  # (openid, template_id)
    followers: set[str] = field(default_factory=set)
    token_ttl_s: int = 7200
    now: Callable[[], float] = time.time
    throttle_next: int = 0
    throttle_code: int = 45009
    busy_next: int = 0
    token_calls: int = 0
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (Unix s)
    delivered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    client_msg_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    replayed_client_msg_ids: list[str] = field(default_factory=list)

    def expire_tokens(self) -> None:
        self.tokens = {token: 0.0 for token in self.tokens}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/cgi-bin/stable_token", self.stable_token)
        app.router.add_post("/cgi-bin/message/subscribe/send", self.subscribe)
        app.router.add_post("/cgi-bin/message/template/send", self.template)
        return app

    async def stable_token(self, request: web.Request) -> web.Response:
        self.token_calls += 1
        body = await request.json()
        if body.get("grant_type") != "client_credential":
            return error(40002, "invalid grant_type")
        if body.get("appid") != self.appid:
            return error(40013, "invalid appid")
        if body.get("secret") != self.secret:
            return error(40125, "invalid appsecret")
        live = [t for t, expiry in self.tokens.items() if expiry > self.now()]
        token = live[0] if live and not body.get("force_refresh") else secrets.token_hex(16)
        self.tokens[token] = self.tokens.get(token) or self.now() + self.token_ttl_s
        return web.json_response(
            {"access_token": token, "expires_in": int(self.tokens[token] - self.now())}
        )

    async def subscribe(self, request: web.Request) -> web.Response:
        body, refused = await self.accepted(request)
        if refused is not None:
            return refused
        if body.get("lang") != "zh_CN" or body.get("miniprogram_state") not in STATES:
            return error(47003, "argument invalid! lang or miniprogram_state")
        grant = (body["touser"], body["template_id"])
        if grant not in self.subscriptions:
            return error(43101, "user refuse to accept the msg")
        self.subscriptions.discard(grant)
        self.delivered.append(("subscribe", body))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def template(self, request: web.Request) -> web.Response:
        body, refused = await self.accepted(request)
        if refused is not None:
            return refused
        if body["touser"] not in self.followers:
            return error(40003, "invalid openid")
        key = (body["touser"], str(body.get("client_msg_id", "")))
        if key[1] and key in self.client_msg_ids:
            self.replayed_client_msg_ids.append(key[1])
            return web.json_response(
                {"errcode": 0, "errmsg": "ok", "msgid": self.client_msg_ids[key]}
            )
        msgid = 200000000 + len(self.delivered)
        if key[1]:
            self.client_msg_ids[key] = msgid
        self.delivered.append(("template", body))
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def accepted(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        """The body of an authorized, unthrottled send whose template and data are valid."""
        body: dict[str, Any] = await request.json()
        token = request.query.get("access_token", "")
        if token not in self.tokens:
            return body, error(40001, "invalid credential, access_token is invalid")
        if self.tokens[token] <= self.now():
            return body, error(42001, "access_token expired")
        if self.busy_next:
            self.busy_next -= 1
            return body, error(-1, "system error")
        if self.throttle_next:
            self.throttle_next -= 1
            return body, error(self.throttle_code, "reach max api daily quota limit")
        if not body.get("touser"):
            return body, error(40003, "invalid openid")
        wanted = self.templates.get(str(body.get("template_id")))
        if wanted is None:
            return body, error(40037, "invalid template_id")
        if not valid_data(body.get("data"), wanted):
            return body, error(47003, "argument invalid! data")
        return body, None


def valid_data(data: Any, wanted: set[str]) -> bool:
    if not isinstance(data, Mapping) or set(data) != wanted:
        return False
    return all(
        isinstance(v, Mapping) and isinstance(v.get("value"), str) and v["value"]
        for v in data.values()
    )


def error(code: int, message: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": message})
