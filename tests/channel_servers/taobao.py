"""A fake TOP router: signed calls, incremental trade pages, full trades and a TMC queue.

It implements TOP's contract on its own (it never imports the client): it recomputes `sign` for
md5, hmac and hmac-sha256, refuses a timestamp more than 10 minutes from its clock, answers a
wrong session, an unknown trade, a window wider than a day and a too-large page with TOP's error
answers, sorts increment pages by `modified` descending as TOP does, sends only the requested
fields, throttles on demand (`throttle_next`) with code 7, and serves a TMC queue whose
unconfirmed messages come back on the next consume (at-least-once).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from schemas.base import SHANGHAI

FIXTURES = Path(__file__).parents[1] / "fixtures" / "taobao"
PATH = "/router/rest"
FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_SKEW = timedelta(minutes=10)
Answer = dict[str, Any]


def fixture_trades() -> list[dict[str, Any]]:
    """The six trades of the fixtures, full as trade.fullinfo.get sends them."""
    trades: list[dict[str, Any]] = []
    for name in ("trade_fullinfo_paid", "trade_fullinfo_unpaid", "trade_closed_refunded",
                 "trade_closed_by_taobao"):
        body = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        trades.append(body["trade_fullinfo_get_response"]["trade"])
    sold = json.loads((FIXTURES / "trades_sold_get.json").read_text(encoding="utf-8"))
    trades.extend(sold["trades_sold_get_response"]["trades"]["trade"])
    return trades


def modified_at(trade: Mapping[str, Any], moment: datetime) -> dict[str, Any]:
    """A copy of `trade` last modified at `moment` (aware), in TOP's naive Beijing form."""
    changed = copy.deepcopy(dict(trade))
    changed["modified"] = moment.astimezone(SHANGHAI).strftime(FORMAT)
    return changed


def top_sign(form: Mapping[str, str], secret: str, method: str) -> str:
    joined = "".join(k + v for k, v in sorted(form.items()) if k != "sign" and v).encode()
    key = secret.encode()
    if method == "md5":
        return hashlib.md5(key + joined + key).hexdigest().upper()
    digest = hashlib.md5 if method == "hmac" else hashlib.sha256
    return hmac.new(key, joined, digest).hexdigest().upper()


def error(code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> Answer:
    body: Answer = {"code": code, "msg": msg, "request_id": "fake0req"}
    if sub_code:
        body["sub_code"] = sub_code
        body["sub_msg"] = sub_msg
    return {"error_response": body}


def invalid(parameter: str, why: str) -> Answer:
    # Business-parameter refusals come as code 15 with an isv.* sub_code.
    return error(15, "Remote service error", f"isv.invalid-parameter:{parameter}", why)


class FakeTop:
    """One app (`app_key`/`secret`) with one authorized seller (`session`)."""

    def __init__(self, app_key: str, secret: str, session: str, trades: list[dict[str, Any]],
                 now: Callable[[], datetime], group: str = "default") -> None:
        self.app_key = app_key
        self.secret = secret
        self.session = session
        self.trades = {str(t["tid"]): t for t in trades}
        self.now = now
        self.group = group
        self.throttle_next = 0
        self.calls: list[dict[str, str]] = []
        self.after_list: Callable[[FakeTop], None] | None = None  # e.g. modify a trade mid-walk
        self.queue: list[dict[str, Any]] = []
        self.confirmed: set[str] = set()
        self.methods: dict[str, Callable[[dict[str, str]], Answer]] = {
            "taobao.trades.sold.increment.get": self.increment,
            "taobao.trade.fullinfo.get": self.fullinfo,
            "taobao.tmc.messages.consume": self.consume,
            "taobao.tmc.messages.confirm": self.confirm,
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(PATH, self.handle)
        return app

    def calls_of(self, method: str) -> list[dict[str, str]]:
        return [c for c in self.calls if c.get("method") == method]

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.calls.append(form)
        answer = self.refusal(form) or self.methods[form["method"]](form)
        return web.Response(text=json.dumps(answer, ensure_ascii=False),
                            content_type="application/json")

    def refusal(self, form: dict[str, str]) -> Answer | None:
        """TOP's platform checks, in its order: method, app, timestamp, sign, session, quota."""
        if form.get("method") not in self.methods:
            return error(22, "Invalid method")
        if form.get("app_key") != self.app_key:
            return error(29, "Invalid app Key")
        if not self.fresh(form.get("timestamp", "")):
            return error(31, "Invalid timestamp")
        method = form.get("sign_method", "md5")
        if method not in ("md5", "hmac", "hmac-sha256"):
            return error(25, "Invalid signature")
        expected = top_sign(form, self.secret, method)
        if not hmac.compare_digest(form.get("sign", ""), expected):
            return error(25, "Invalid signature")
        if form["method"].startswith("taobao.tr") and form.get("session") != self.session:
            return error(27, "Invalid session", "invalid-sessionkey", "SessionKey非法")
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return error(7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
                         "This ban will last for 2 more seconds")
        return None

    def fresh(self, timestamp: str) -> bool:
        try:
            sent = datetime.strptime(timestamp, FORMAT).replace(tzinfo=SHANGHAI)
        except ValueError:
            return False
        return abs(sent - self.now()) <= MAX_SKEW

    # -- trades ----------------------------------------------------------------------------------

    def increment(self, form: dict[str, str]) -> Answer:
        for name in ("start_modified", "end_modified", "fields"):
            if not form.get(name):
                return error(40, f"Missing required arguments:{name}")
        start, end = _time(form["start_modified"]), _time(form["end_modified"])
        if start is None or end is None or end < start:
            return invalid("start_modified", "start_modified/end_modified are not a time range")
        if end - start > timedelta(days=1):
            return invalid("end_modified", "end_modified - start_modified must be at most 1 day")
        size, number = int(form.get("page_size", "40")), int(form.get("page_no", "1"))
        if not 1 <= size <= 100:
            return invalid("page_size", "page_size must be 1..100")
        found = sorted((t for t in self.trades.values() if start <= _modified(t) <= end),
                       key=lambda t: (t["modified"], t["tid"]), reverse=True)
        page = found[(number - 1) * size:number * size]
        fields = form["fields"].split(",")
        body: Answer = {"request_id": "fake0list"}
        if page:
            body["trades"] = {"trade": [_pick(t, fields) for t in page]}
        if form.get("use_has_next") == "true":
            body["has_next"] = number * size < len(found)
        else:
            body["total_results"] = len(found)
        if self.after_list is not None:
            self.after_list(self)
        return {"trades_sold_increment_get_response": body}

    def fullinfo(self, form: dict[str, str]) -> Answer:
        if not form.get("tid") or not form.get("fields"):
            return error(40, "Missing required arguments:tid,fields")
        trade = self.trades.get(form["tid"])
        if trade is None:
            return error(15, "Remote service error", "isv.trade-not-exist", "交易不存在")
        return {"trade_fullinfo_get_response": {"trade": _pick(trade, form["fields"].split(",")),
                                                "request_id": "fake0full"}}

    # -- TMC -------------------------------------------------------------------------------------

    def publish(self, message_id: int, topic: str, content: Mapping[str, Any] | str,
                pub_time: str = "2026-03-11 09:30:00") -> None:
        """Queue one message as taobao.tmc.messages.consume returns it."""
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        self.queue.append({"id": message_id, "topic": topic, "pub_time": pub_time,
                           "pub_app_key": "12497914", "user_id": 2231958,
                           "user_nick": "山川户外旗舰店", "content": text})

    def consume(self, form: dict[str, str]) -> Answer:
        if form.get("group_name", "default") != self.group:
            return error(15, "Remote service error", "isv.group-not-exist", "分组不存在")
        quantity = int(form.get("quantity", "100"))
        if not 10 <= quantity <= 200:
            return invalid("quantity", "quantity must be 10..200")
        waiting = [m for m in self.queue if str(m["id"]) not in self.confirmed][:quantity]
        body: Answer = {"request_id": "fake0tmc"}
        if waiting:
            body["messages"] = {"tmc_message": waiting}
        return {"tmc_messages_consume_response": body}

    def confirm(self, form: dict[str, str]) -> Answer:
        ids = [i for i in form.get("s_message_ids", "").split(",") if i]
        if not ids or len(ids) > 200:
            return invalid("s_message_ids", "1..200 message ids")
        self.confirmed.update(ids)
        return {"tmc_messages_confirm_response": {"is_success": True}}


def _time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, FORMAT).replace(tzinfo=SHANGHAI)
    except ValueError:
        return None


def _modified(trade: Mapping[str, Any]) -> datetime:
    return datetime.strptime(trade["modified"], FORMAT).replace(tzinfo=SHANGHAI)


def _pick(trade: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    return {f: trade[f] for f in fields if f in trade}
