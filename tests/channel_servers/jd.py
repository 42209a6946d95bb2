"""A fake JOS router (`api.jd.com/routerjson`) for jingdong.pop.order.search and .get.

It implements the contract independently of `ingest.jd`: it recomputes the MD5 signature from the
raw parameters, refuses a timestamp more than 6 minutes off, refuses an unknown app_key or token,
checks the business parameters order.search requires, refuses a window wider than one calendar
month, pages a fixed set of orders by `modified` (ascending, like sortType 0) and returns only the
`optional_fields` asked for. `throttle_next`, `unavailable_next` and `busy_next` make the next
calls fail with JOS's call-limit error, its "backend unavailable" error or a busy apiResult.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from schemas.base import SHANGHAI

FIXTURES = Path(__file__).parents[1] / "fixtures" / "jd"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_SKEW = timedelta(minutes=6)  # "京东API服务端允许客户端请求时间误差为6分钟"
MAX_PAGE_SIZE = 100
STATES = frozenset({
    "WAIT_SELLER_STOCK_OUT", "WAIT_GOODS_RECEIVE_CONFIRM", "WAIT_SELLER_DELIVERY", "PAUSE",
    "FINISHED_L", "TRADE_CANCELED", "LOCKED", "POP_ORDER_PAUSE",
})
# JOS gateway error table (code: zh_desc, en_desc).
ERRORS: Mapping[str, tuple[str, str]] = {
    "2": ("限制时间内调用失败次数", "App Call Limited"),
    "4": ("缺少版本参数", "Missing Version"),
    "5": ("不支持的版本号", "Unsupported Version"),
    "7": ("缺少时间戳参数", "Missing Timestamp"),
    "8": ("非法的时间戳参数", "Invalid Timestamp"),
    "11": ("缺少签名参数", "Missing Signature"),
    "12": ("无效签名", "Invalid Signature"),
    "14": ("缺少方法名参数", "Missing Method"),
    "15": ("不存在的方法名", "Invalid Method"),
    "18": ("缺少access_token参数", "Missing access_token"),
    "19": ("无效access_token", "Invalid access_token"),
    "20": ("缺少app_key参数", "Missing app_key"),
    "21": ("无效app_key", "Invalid app_key"),
    "61": ("参数值不合法，请参照帮助文档确认！", "parameter is not valid"),
    "63": ("json格式不合法", "invalid json"),
    "66": ("平台连接后端服务不可用", "platform to connect to the back-end service not available"),
}
API_OK = {"success": True, "englishErrCode": "", "chineseErrCode": "", "numberCode": 0}
# No published code for a too-wide window: a failed apiResult with an assumed numberCode.
WINDOW_TOO_WIDE = {
    "success": False, "numberCode": 10100041,
    "englishErrCode": "start_date and end_date must not be more than one month apart",
    "chineseErrCode": "开始时间和结束时间，不得相差超过1个月",
}
BUSY = {"success": False, "numberCode": 10100000, "englishErrCode": "system busy",
        "chineseErrCode": "系统繁忙，请稍后再试"}


class Refused(Exception):
    """A gateway error to answer as `{"error_response": {...}}`."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


@dataclass
class JdRouter:
    """The fake router's state: one app, one shop's token, its orders and failure switches."""

    app_key: str
    secret: str
    access_token: str
    orders: list[dict[str, Any]]
    now: Callable[[], datetime]
    throttle_next: int = 0
    unavailable_next: int = 0
    busy_next: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)  # business params, as received

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/routerjson", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        try:
            self.authenticate(params)
            business = self.business(params)
            self.calls.append(business)
            if self.throttle_next > 0:
                self.throttle_next -= 1
                raise Refused("2")
            if self.unavailable_next > 0:
                self.unavailable_next -= 1
                raise Refused("66")
            if params["method"] == "jingdong.pop.order.search":
                return web.json_response(self.search(business))
            if params["method"] == "jingdong.pop.order.get":
                return web.json_response(self.get(business))
            raise Refused("15")
        except Refused as e:
            zh, en = ERRORS[e.code]
            return web.json_response({"error_response": {"code": e.code, "zh_desc": zh,
                                                         "en_desc": en}})

    def authenticate(self, params: Mapping[str, str]) -> None:
        for name, missing in (("method", "14"), ("v", "4"), ("timestamp", "7"), ("sign", "11"),
                              ("app_key", "20"), ("access_token", "18")):
            if not params.get(name):
                raise Refused(missing)
        if params["v"] != "2.0":
            raise Refused("5")
        if params["app_key"] != self.app_key:
            raise Refused("21")
        try:
            stamp = datetime.strptime(params["timestamp"], TIME_FORMAT).replace(tzinfo=SHANGHAI)
        except ValueError:
            raise Refused("8") from None
        if abs(stamp - self.now()) > MAX_SKEW:
            raise Refused("8")
        text = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign")
        expected = hashlib.md5(f"{self.secret}{text}{self.secret}".encode(),
                               usedforsecurity=False).hexdigest().upper()
        if params["sign"] != expected:
            raise Refused("12")
        if params["access_token"] != self.access_token:
            raise Refused("19")

    def business(self, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            value = json.loads(params.get("360buy_param_json", "{}"))
        except ValueError:
            raise Refused("63") from None
        if not isinstance(value, dict):
            raise Refused("63")
        return value

    def search(self, query: Mapping[str, Any]) -> dict[str, Any]:
        states = set(str(_required(query, "order_state")).split(","))
        fields = _fields(query)
        page = _number(query, "page", 1, None)
        size = _number(query, "page_size", 1, MAX_PAGE_SIZE)
        start, end = _time(query, "start_date"), _time(query, "end_date")
        if not states <= STATES:
            raise Refused("61")
        if end > one_month_after(start):
            return _search_answer({"apiResult": WINDOW_TOO_WIDE, "orderTotal": 0})
        if self.busy_next > 0:
            self.busy_next -= 1
            return _search_answer({"apiResult": BUSY, "orderTotal": 0})
        key = "orderStartTime" if str(query.get("dateType")) == "1" else "modified"
        found = sorted((o for o in self.orders if o["orderState"] in states
                        and start <= _parse(o[key]) <= end),
                       key=lambda o: (_parse(o[key]), o["orderId"]))
        result: dict[str, Any] = {"apiResult": API_OK, "orderTotal": len(found)}
        chunk = found[(page - 1) * size:page * size]
        if chunk:  # JOS leaves the list out when there is no order
            result["orderInfoList"] = [_project(o, fields) for o in chunk]
        return _search_answer(result)

    def get(self, query: Mapping[str, Any]) -> dict[str, Any]:
        fields = _fields(query)
        wanted = str(_required(query, "order_id"))
        detail: dict[str, Any] = {"apiResult": API_OK}
        for order in self.orders:
            if order["orderId"] == wanted:
                detail["orderInfo"] = _project(order, fields)
        return {"jingdong_pop_order_get_responce": {"code": "0", "orderDetailInfo": detail}}


def _search_answer(result: dict[str, Any]) -> dict[str, Any]:
    return {"jingdong_pop_order_search_responce": {"code": "0",
                                                   "searchorderinfo_result": result}}


def _required(query: Mapping[str, Any], name: str) -> Any:
    value = query.get(name)
    if value in (None, ""):
        raise Refused("61")
    return value


def _fields(query: Mapping[str, Any]) -> set[str]:
    """optional_fields: "必填，不填或者为空则请求被拒绝"."""
    return set(str(_required(query, "optional_fields")).split(","))


def _number(query: Mapping[str, Any], name: str, low: int, high: int | None) -> int:
    text = str(_required(query, name))
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        raise Refused("61")
    return int(text)


def _time(query: Mapping[str, Any], name: str) -> datetime:
    try:
        return _parse(str(_required(query, name)))
    except ValueError:
        raise Refused("61") from None


def _parse(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=SHANGHAI)


def _project(order: Mapping[str, Any], fields: set[str]) -> dict[str, Any]:
    return {k: v for k, v in order.items() if k in fields}


def one_month_after(start: datetime) -> datetime:
    """The same day of the next calendar month (clamped to its last day)."""
    year, month = start.year + start.month // 12, start.month % 12 + 1
    return start.replace(year=year, month=month,
                         day=min(start.day, calendar.monthrange(year, month)[1]))


def fixture_orders() -> list[dict[str, Any]]:
    """The six orders of tests/fixtures/jd, each as order.search/order.get return it."""
    orders: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("order_*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for wrapper in body.values():
            if "orderDetailInfo" in wrapper:
                orders.append(wrapper["orderDetailInfo"]["orderInfo"])
            else:
                orders.extend(wrapper["searchorderinfo_result"]["orderInfoList"])
    return orders


def generated_orders(count: int, first_modified: datetime, step: timedelta
                     ) -> list[dict[str, Any]]:
    """`count` orders cloned from the fixtures, new orderIds, modified `step` apart.

    The clones keep their template's "0001-01-01 00:00:00" placeholders (COD, not shipped).
    """
    templates = fixture_orders()
    orders = []
    for i in range(count):
        order = json.loads(json.dumps(templates[i % len(templates)]))
        modified = (first_modified + i * step).astimezone(SHANGHAI)
        created = modified - timedelta(minutes=3)
        order["orderId"] = str(320000000000 + i)
        order["orderStartTime"] = created.strftime(TIME_FORMAT)
        order["modified"] = modified.strftime(TIME_FORMAT)
        for key, moment in (("paymentConfirmTime", created + timedelta(seconds=20)),
                            ("orderEndTime", modified), ("outBoundDate", modified)):
            if key in order and not order[key].startswith("0001-"):
                order[key] = moment.strftime(TIME_FORMAT)
        orders.append(order)
    return orders
