"""A fake Douyin open API gateway (order.searchList, order.orderDetail) for the pull client's tests.

It implements the contract on its own rather than through `ingest.douyin_api`: it recomputes the
sign (hmac-sha256 or md5) from the query and the raw body, checks the app key, the access token,
the timestamp (±10 min), the 90-day reach and the 50,000-deep paging of order.searchList, and
answers with Douyin's envelopes and error codes. Orders are served from a fixed set sorted by
update time; `throttle_next` / `busy_next` make the next calls fail like Douyin does.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parents[1] / "fixtures" / "douyin"
SKEW_S = 600
REACH_S = 90 * 24 * 3600
MAX_DEPTH = 50_000


def fixture_orders() -> list[dict[str, Any]]:
    """Every shop order in the Douyin fixtures (19-digit ids, sku_ids beyond 2^53)."""
    orders: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8")).get("data") or {}
        orders.extend(data.get("shop_order_list") or [])
        if "shop_order_detail" in data:
            orders.append(data["shop_order_detail"])
    return copy.deepcopy(orders)


class Refusal(Exception):
    def __init__(self, code: int, msg: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        self.envelope = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _invalid(sub_code: str, sub_msg: str) -> Refusal:
    return Refusal(40004, "非法的参数", sub_code, sub_msg)


class FakeDouyin:
    """The gateway's state: credentials, orders, failure switches and what was asked."""

    def __init__(self, app_key: str, app_secret: str, access_token: str,
                 orders: list[dict[str, Any]], now: Callable[[], datetime]) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.access_token = access_token
        self.orders = {str(o["order_id"]): o for o in orders}
        self.now = now
        self.throttle_next = 0
        self.busy_next = 0
        self.calls: list[dict[str, Any]] = []  # {"method", "query", "params"} per accepted call
        self.after_call: Callable[[FakeDouyin], None] | None = None
        self._log = 0

    def touch(self, order_id: str, update_time: int) -> None:
        """The order changes on Douyin's side: it moves in the update-time order."""
        self.orders[order_id]["update_time"] = update_time

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/order/searchList", self._handler("order.searchList"))
        app.router.add_route("*", "/order/orderDetail", self._handler("order.orderDetail"))
        return app

    def _handler(self, method: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            raw = (await request.read()).decode() or request.query.get("param_json", "")
            try:
                params = self._admit(method, dict(request.query), raw)
                data = (self._search if method == "order.searchList" else self._detail)(params)
            except Refusal as refusal:
                return self._answer(refusal.envelope)
            if self.after_call:
                self.after_call(self)
            return self._answer({"code": 10000, "msg": "success", "sub_code": "",
                                 "sub_msg": "", "data": data})
        return handle

    def _answer(self, envelope: dict[str, Any]) -> web.Response:
        self._log += 1
        envelope = {**envelope, "log_id": f"20251215102224010208139073{self._log:06d}"}
        envelope.setdefault("data", {})
        return web.Response(text=json.dumps(envelope, ensure_ascii=False),
                            content_type="application/json")

    def _admit(self, method: str, query: Mapping[str, str], raw: str) -> dict[str, Any]:
        """The platform's checks, in the order its error table lists them."""
        for name in ("app_key", "method", "timestamp", "v", "sign"):
            if not query.get(name):
                raise Refusal(40001, "缺少必选参数", "isv.signature-missing"
                              if name == "sign" else f"isv.{name}-missing", f"{name} 缺失")
        if query["app_key"] != self.app_key:
            raise Refusal(40003, "非法的参数", "isv.app-id-invalid", "认证失败，app_key不正确")
        if query.get("access_token") != self.access_token:
            raise Refusal(40003, "非法的参数", "isv.access-token-no-existed",
                          "access_token不存在，请使用最新的access_token访问")
        if query["method"] != method or query["v"] != "2":
            raise _invalid("isv.parameter-invalid", "method 或 v 不正确")
        if not hmac.compare_digest(query["sign"], self._sign(query, raw)):
            raise Refusal(40003, "非法的参数", "isv.signature-invalid", "签名校验失败")
        if abs(self._seconds(query["timestamp"]) - self.now().timestamp()) > SKEW_S:
            raise Refusal(40003, "非法的参数", "isv.timestamp-invalid", "时间戳不合法")
        if self.throttle_next:
            self.throttle_next -= 1
            raise Refusal(60000, "触发限流，请稍后重试", "isp.traffic-limited", "请求太频繁")
        if self.busy_next:
            self.busy_next -= 1
            raise Refusal(20000, "系统错误", "isp.service-error:20005", "系统繁忙，请稍后重试")
        try:
            params = json.loads(raw or "{}")
        except ValueError as e:
            raise Refusal(40003, "非法的参数", "isv.parameter-format-invalid",
                          "业务参数json解析失败") from e
        self.calls.append({"method": method, "query": dict(query), "params": params})
        return dict(params)

    def _sign(self, query: Mapping[str, str], raw: str) -> str:
        text = (self.app_secret + "app_key" + query["app_key"] + "method" + query["method"]
                + "param_json" + raw + "timestamp" + query["timestamp"] + "v" + query["v"]
                + self.app_secret).encode()
        if query.get("sign_method") == "hmac-sha256":
            return hmac.new(self.app_secret.encode(), text, hashlib.sha256).hexdigest()
        return hashlib.md5(text).hexdigest()

    def _seconds(self, timestamp: str) -> float:
        if timestamp.isdigit():
            return float(timestamp)
        try:  # the older form, naive Beijing time
            return datetime.fromisoformat(timestamp + "+08:00").timestamp()
        except ValueError as e:
            raise Refusal(40003, "非法的参数", "isv.timestamp-format-error",
                          "时间戳格式错误") from e

    def _search(self, params: Mapping[str, Any]) -> dict[str, Any]:
        start, end = params.get("update_time_start"), params.get("update_time_end")
        page, size = int(params.get("page", 0)), int(params.get("size", 20))
        if start is None:
            raise _invalid("isv.parameter-invalid:20011", "订单查询开始时间不能为空")
        if start < self.now().timestamp() - REACH_S:
            raise _invalid("isv.parameter-invalid:20022", "订单查询只支持查询最近90天内的数据")
        if size > 100:
            raise _invalid("isv.parameter-invalid:20008", "单次查询订单数超过限制")
        if page < 0:
            raise _invalid("isv.parameter-invalid:10035", "查询订单列表页数不能小于0")
        if (page + 1) * size > MAX_DEPTH:
            raise _invalid("isv.parameter-invalid:20013", "订单查询最多支持查询5万")
        order_by = "update_time" if params.get("order_by") == "update_time" else "create_time"
        found = sorted((o for o in self.orders.values()
                        if start <= o["update_time"] and (end is None or o["update_time"] <= end)),
                       key=lambda o: (o[order_by], o["order_id"]),
                       reverse=not params.get("order_asc", False))
        return {"page": page, "size": size, "total": len(found),
                "shop_order_list": copy.deepcopy(found[page * size:(page + 1) * size])}

    def _detail(self, params: Mapping[str, Any]) -> dict[str, Any]:
        order = self.orders.get(str(params.get("shop_order_id", "")))
        if order is None:
            raise Refusal(50002, "业务处理失败", "isv.business-failed:20001", "订单不存在")
        return {"shop_order_detail": copy.deepcopy(order)}
