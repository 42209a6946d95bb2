"""A fake Pinduoduo: the open-API router and the message WebSocket, each enforcing its contract.

The router (`POST /api/router`, form-encoded) knows one app and one shop's token. It recomputes
the MD5 signature over every received parameter but `sign` and refuses a mismatch, refuses a
timestamp more than ten minutes off its clock and an expired token (PDD's 10019 answer), refuses
an increment window wider than 30 minutes, pages a fixed set of orders by `updated_at`
(`total_count` only without `use_has_next`, `has_next` only with it), answers
`pdd.order.information.get`, and throttles (70031) or is busy (52103) on demand.

The message endpoint (`/message/{client_id}/{ms}/{sign}`) checks the signed path (a stale or
forged one gets 403 before the upgrade), sends a heartbeat, then every queued frame not yet
acknowledged, and records the Ack and HeartBeat frames the client sends.

Error codes other than 10019 are ASSUMPTIONS (see ingest/pdd_api.py); the client does not
depend on them beyond "not throttling, not busy".
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from schemas.base import SHANGHAI

FIXTURES = Path(__file__).parents[1] / "fixtures" / "pdd"
INCREMENT = "pdd.order.number.list.increment.get"
INFORMATION = "pdd.order.information.get"
MAX_SPAN_S = 30 * 60
MAX_SKEW_S = 600
MAX_WS_SKEW_MS = 5 * 60 * 1000
SYSTEM = ("type", "client_id", "timestamp", "sign")


def fixture_order(name: str) -> dict[str, Any]:
    """The order of an `order_info_*` fixture file."""
    body = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    order: dict[str, Any] = body["order_info_get_response"]["order_info"]
    return order


def variant(order: Mapping[str, Any], sn: str, updated: datetime) -> dict[str, Any]:
    """A copy of `order` as order `sn`, last updated at `updated` (an aware time)."""
    copied = copy.deepcopy(dict(order))
    copied["order_sn"] = sn
    copied["updated_at"] = updated.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    return copied


def spread(start: datetime, count: int, step: timedelta) -> list[dict[str, Any]]:
    """`count` orders cycling through the fixtures, updated at start, start + step, ..."""
    names = ("order_info_awaiting_shipment", "order_info_shipped", "order_info_received",
             "order_info_refunded", "order_info_group_forming", "order_info_group_failed")
    bases = [fixture_order(name) for name in names]
    return [variant(bases[i % len(bases)], f"251215-{900000000000000 + i}", start + step * i)
            for i in range(count)]


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest().upper()


class FakePdd:
    """One PDD app (client id and secret) with one authorized shop (its access token)."""

    def __init__(self, orders: Sequence[Mapping[str, Any]], *, client_id: str = "pdd-app-1",
                 client_secret: str = "pdd-secret-1", access_token: str = "pdd-token-1") -> None:
        self.orders = {o["order_sn"]: dict(o) for o in orders}
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token = access_token
        self.token_expired = False
        self.throttle_next = 0
        self.busy_next = 0
        self.calls: list[dict[str, str]] = []
        self.frames: dict[str, str] = {}  # frame id -> frame text, until acknowledged
        self.acks: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.paths: list[str] = []
        self.sockets: list[web.WebSocketResponse] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/router", self.router)
        app.router.add_get("/message/{client_id}/{millis}/{sign:.+}", self.message_socket)
        return app

    def touch(self, sn: str, updated: datetime) -> None:
        """The order changes now: its `updated_at` moves to `updated`."""
        self.orders[sn] = variant(self.orders[sn], sn, updated)

    def queue(self, frame: Mapping[str, Any], key: str | None = None) -> None:
        """A frame to send on every connection until the client acknowledges its id."""
        self.frames[key or str(frame["id"])] = json.dumps(frame)

    async def kick(self) -> None:
        """Close every open connection from the server side (run on the server's loop)."""
        for ws in self.sockets:
            await ws.close()
        self.sockets.clear()

    # --- the router ----------------------------------------------------------------------

    async def router(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.calls.append(form)
        refusal = self._refusal(form)
        if refusal is not None:
            return refusal
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return _error(70031, "调用过于频繁，请调整调用频率")
        if self.busy_next > 0:
            self.busy_next -= 1
            return _error(52103, "服务暂不可用，请稍后重试")
        if form["type"] == INCREMENT:
            return self._increment(form)
        if form["type"] == INFORMATION:
            order = self.orders.get(form.get("order_sn", ""))
            return _answer({"order_info_get_response": {"order_info": order,
                                                        "request_id": _request_id()}})
        return _error(10000, "参数错误", "type不存在")

    def _refusal(self, form: Mapping[str, str]) -> web.Response | None:
        missing = [name for name in SYSTEM if not form.get(name)]
        if missing:
            return _error(10000, "参数错误", f"缺少参数{missing[0]}")
        if form["client_id"] != self.client_id:
            return _error(10001, "client_id不存在")
        pairs = sorted((k, v) for k, v in form.items() if k != "sign")
        expected = md5_upper(self.client_secret + "".join(k + v for k, v in pairs)
                             + self.client_secret)
        if not hmac.compare_digest(form["sign"], expected):
            return _error(20004, "签名错误")
        if not form["timestamp"].isdigit() or abs(int(form["timestamp"]) - time.time()) \
                > MAX_SKEW_S:
            return _error(10000, "参数错误", "timestamp已过期")
        if form.get("access_token") != self.access_token or self.token_expired:
            return _error(10019, "access_token已过期", "access_token已过期", "10019")
        return None

    def _increment(self, form: Mapping[str, str]) -> web.Response:
        try:
            start, end = int(form["start_updated_at"]), int(form["end_updated_at"])
            page, size = int(form.get("page", "1")), int(form.get("page_size", "100"))
        except (KeyError, ValueError):
            return _error(10000, "参数错误", "start_updated_at/end_updated_at必填")
        if end < start or end - start > MAX_SPAN_S:
            return _error(10000, "参数错误", "开始时间结束时间间距不超过30分钟")
        if not 1 <= size <= 100 or page < 1:
            return _error(10000, "参数错误", "page_size最大100")
        found = sorted((o for o in self.orders.values() if start <= _unix(o) <= end),
                       key=lambda o: (_unix(o), o["order_sn"]))
        answer: dict[str, Any] = {"order_sn_list": found[(page - 1) * size: page * size],
                                  "request_id": _request_id()}
        if form.get("use_has_next") == "true":
            answer["has_next"] = page * size < len(found)
        else:
            answer["total_count"] = len(found)
        return _answer({"order_sn_increment_get_response": answer})

    # --- the message service -------------------------------------------------------------

    def message_path_ok(self, client_id: str, millis: str, token: str) -> bool:
        if client_id != self.client_id or not millis.isdigit():
            return False
        if abs(int(millis) - time.time() * 1000) > MAX_WS_SKEW_MS:
            return False
        hex_digest = hashlib.md5(f"{client_id}{millis}{self.client_secret}".encode(),
                                 usedforsecurity=False).hexdigest()
        return hmac.compare_digest(token, base64.b64encode(hex_digest.encode()).decode())

    async def message_socket(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        if not self.message_path_ok(info["client_id"], info["millis"], info["sign"]):
            raise web.HTTPForbidden(text="invalid sign")
        self.paths.append(request.path)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_str(json.dumps({"commandType": "HeartBeat",
                                      "time": int(time.time() * 1000)}))
        for text in list(self.frames.values()):
            await ws.send_str(text)
        async for received in ws:
            if received.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(received.data)
            if frame.get("commandType") == "Ack":
                self.acks.append(frame)
                self.frames.pop(str(frame.get("id")), None)
            elif frame.get("commandType") == "HeartBeat":
                self.heartbeats += 1
        return ws


def _unix(order: Mapping[str, Any]) -> int:
    moment = datetime.strptime(order["updated_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
    return int(moment.timestamp())


def _request_id() -> str:
    return str(time.time_ns())


def _answer(body: Mapping[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(body, ensure_ascii=False),
                        content_type="application/json")


def _error(code: int, message: str, sub_msg: str = "", sub_code: str | None = None
           ) -> web.Response:
    return _answer({"error_response": {"error_code": code, "error_msg": message,
                                       "sub_code": sub_code, "sub_msg": sub_msg,
                                       "request_id": _request_id()}})


def kick_from(loop: asyncio.AbstractEventLoop, fake: FakePdd) -> None:
    """Close every open connection, from a thread other than the server's."""
    asyncio.run_coroutine_threadsafe(fake.kick(), loop).result(10)
