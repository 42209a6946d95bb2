"""Taobao / Tmall over the network: TOP's signed router, the incremental pull and TMC frames.

TOP facts this module relies on (open.taobao.com API call protocol, docId 101617, and the
`taobao.trades.sold.increment.get` / `taobao.tmc.messages.*` API pages):

- every call is a form POST to one router URL with `method, app_key, session, timestamp
  (yyyy-MM-dd HH:mm:ss GMT+8, within 10 minutes of TOP's clock), format, v=2.0, sign_method`
  plus the API's own parameters, signed by `sign`;
- the answer is `{"<api without taobao. and dots as _>_response": {...}}` or
  `{"error_response": {code, msg, sub_code, sub_msg}}`; `sub_code` says who is at fault:
  `isv.*` the caller (our parameters), `isp.*` the platform (retry), `accesscontrol.*` the quota;
- the increment list is sorted by `modified` descending and at most a day wide; TOP advises
  counting first and paging from the last page back, so a trade modified while we page (it leaves
  the window) cannot shift another trade past a page we have already read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
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
from ingest.push import Delivery
from normalize.fields import as_int, as_mapping, as_text, beijing_time, id_text
from normalize.taobao import STATUS
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError, InvalidInput, TransientError
from schemas.events import OrderStatusChanged
from schemas.order import Channel, OrderStatus, canonical_id

log = logging.getLogger(__name__)

ROUTER = "https://eco.taobao.com/router/rest"
SIGN_METHODS = ("md5", "hmac", "hmac-sha256")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIMEOUT = aiohttp.ClientTimeout(total=30)
# TOP quotas are per app and API and differ by app tier; 10 calls/s is a safe default.
DEFAULT_RATE = "10"
# What the mapper (normalize/taobao.py) reads, plus what helps people; TOP sends only these.
TRADE_FIELDS = ",".join((
    "tid", "tid_str", "status", "type", "step_trade_status", "step_paid_fee", "new_presell",
    "created", "pay_time", "modified", "consign_time", "end_time", "seller_nick",
    "buyer_open_uid", "total_fee", "discount_fee", "adjust_fee", "post_fee", "payment",
    "shipping_type", "buyer_message", "receiver_name", "receiver_mobile", "receiver_phone",
    "receiver_state", "receiver_city", "receiver_district", "receiver_town", "receiver_address",
    "receiver_zip", "oaid", "cross_bonded_declare", "post_gate_declare", "promotion_details",
    "orders",
))
THROTTLED_SUB_CODES = ("accesscontrol.", "isp.call-limited")
TRANSIENT_CODES = frozenset({"10", "15"})  # Service currently unavailable, Remote service error
BAN = re.compile(r"ban will last for (\d+) more seconds", re.IGNORECASE)
# Assumption: fullinfo of a tid the seller does not have answers sub_code isv.trade-not-exist.
NOT_FOUND = "isv.trade-not-exist"


def sign(params: Mapping[str, str], secret: str, method: str = "md5") -> str:
    """TOP's request signature: key+value pairs sorted by key (no `sign`, no empty values),
    digested with the app secret; upper-case hex."""
    text = "".join(f"{key}{value}" for key, value in sorted(params.items())
                   if key != "sign" and value != "").encode()
    key = secret.encode()
    if method == "md5":
        digest = hashlib.md5(key + text + key).hexdigest()  # noqa: S324 - TOP's scheme
    elif method == "hmac":
        digest = hmac.new(key, text, hashlib.md5).hexdigest()
    elif method == "hmac-sha256":
        digest = hmac.new(key, text, hashlib.sha256).hexdigest()
    else:
        raise ConfigurationError(f"TOP sign_method {method!r} is not one of {SIGN_METHODS}")
    return digest.upper()


def top_time(moment: datetime) -> str:
    """An aware time as TOP writes it: naive Beijing wall time."""
    return moment.astimezone(SHANGHAI).strftime(TIME_FORMAT)


def top_error(api: str, error: Any) -> Exception:
    """Our exception for TOP's `error_response`, by who is at fault (see the module docstring)."""
    body = error if isinstance(error, Mapping) else {}
    code = str(body.get("code", ""))
    sub = str(body.get("sub_code") or "")
    text = f"{api}: TOP error {code} {body.get('msg')}"
    if sub:
        text += f" ({sub}: {body.get('sub_msg')})"
    if code == "7" or sub.startswith(THROTTLED_SUB_CODES):
        return Throttled(text, _ban_seconds(body.get("sub_msg")))
    if sub.startswith("isv."):
        return ChannelError(text, code=sub)
    if code in TRANSIENT_CODES or sub.startswith("isp."):
        return TransientError(text)
    return ChannelError(text, code=code or None)


def _ban_seconds(sub_msg: Any) -> float | None:
    """TOP says how long a quota ban lasts: "This ban will last for 3 more seconds"."""
    found = BAN.search(sub_msg) if isinstance(sub_msg, str) else None
    return float(found.group(1)) if found else None


def number_option(shop: ShopConfig, name: str, default: str, low: float, high: float) -> float:
    """A numeric shop option within TOP's bounds, else a ConfigurationError saying which."""
    text = shop.option(name, default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise ConfigurationError(f"shop taobao/{shop.shop}: option {name} must be a number "
                                 f"from {low:g} to {high:g}, got {text!r}")
    return value


def response_key(api: str) -> str:
    """`taobao.trade.fullinfo.get` answers under `trade_fullinfo_get_response`."""
    return api.removeprefix("taobao.").replace(".", "_") + "_response"


class Router:
    """Signed calls to TOP's router for one shop; secrets stay in the form, never in messages."""

    def __init__(self, shop: ShopConfig, http: aiohttp.ClientSession, clock: Clock) -> None:
        self.shop = shop
        self.http = http
        self.clock = clock
        self.url = shop.option("base_url", ROUTER)
        self.sign_method = shop.option("sign_method", "md5")
        if self.sign_method not in SIGN_METHODS:
            raise ConfigurationError(f"shop taobao/{shop.shop}: option sign_method must be one "
                                     f"of {', '.join(SIGN_METHODS)}")
        rate = number_option(shop, "rate_per_s", DEFAULT_RATE, 0.1, 1000)
        self.limiter = RateLimiter(rate, max(1, math.ceil(rate)))

    async def call(self, api: str, params: Mapping[str, str], *, authorized: bool = True
                   ) -> Mapping[str, Any]:
        """The body under `<api>_response`; TOP's error answers raised as our exceptions.

        `authorized` calls carry the seller's `session`; TMC calls are the app's own.
        """
        form = {"method": api, "app_key": self.shop.secret("app_key"), "format": "json",
                "v": "2.0", "sign_method": self.sign_method, "timestamp": top_time(self.clock()),
                **params}
        if authorized:
            form["session"] = self.shop.secret("session")
        form["sign"] = sign(form, self.shop.secret("app_secret"), self.sign_method)
        await self.limiter.acquire()
        try:
            async with self.http.post(self.url, data=form, timeout=TIMEOUT) as response:
                answer = await read_json(response, api)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"{api}: {type(e).__name__} talking to TOP: {e}") from e
        if not isinstance(answer, Mapping):
            raise TransientError(f"{api}: TOP answered a JSON {type(answer).__name__}")
        if "error_response" in answer:
            raise top_error(api, answer["error_response"])
        body = answer.get(response_key(api))
        if not isinstance(body, Mapping):
            raise TransientError(f"{api}: TOP answered without {response_key(api)}")
        return body


class Client:
    """Pulls a shop's trades: `taobao.trades.sold.increment.get` for the tids modified in a
    window, then `taobao.trade.fullinfo.get` for each, so pages hold full trades.

    Credentials `app_key`, `app_secret`, `session`; options `base_url`, `sign_method`
    (md5 | hmac | hmac-sha256), `page_size` (≤ 100), `rate_per_s`.
    Page tokens are the TOP page numbers still to read, walked from the last page back to 1.
    """

    channel: ClassVar[str] = "taobao"
    max_window: ClassVar[timedelta] = timedelta(days=1)
    end_lag: ClassVar[timedelta] = timedelta(0)

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.router = Router(shop, session, clock)
        self.page_size = int(number_option(shop, "page_size", "100", 1, 100))

    async def fetch(self, window: Window, page: str | None) -> Page:
        if page is None:  # count, then start from the last page
            first = await self._list(window, 1, count=True)
            number = max(1, math.ceil(_total(first) / self.page_size))
            listed = first if number == 1 else await self._list(window, number)
        else:
            number = _page_number(page)
            listed = await self._list(window, number)
        orders = [trade for tid in _tids(listed) if (trade := await self._trade(tid)) is not None]
        return Page(orders, str(number - 1) if number > 1 else None)

    async def fetch_order(self, native_id: str) -> Mapping[str, Any] | None:
        try:
            body = await self.router.call("taobao.trade.fullinfo.get",
                                          {"tid": native_id, "fields": TRADE_FIELDS})
        except ChannelError as e:
            if e.code is not None and e.code.startswith(NOT_FOUND):
                return None
            raise
        trade = body.get("trade")
        if trade is None:
            return None
        if not isinstance(trade, Mapping) or not any(k in trade for k in ("tid", "tid_str")):
            raise ChannelError(f"taobao.trade.fullinfo.get {native_id}: answer has no trade",
                               code="answer")
        return trade

    async def _trade(self, tid: str) -> Mapping[str, Any] | None:
        trade = await self.fetch_order(tid)
        if trade is None:  # listed a moment ago; TOP should never do this
            log.warning("taobao: listed trade %s is unknown to trade.fullinfo.get", tid)
        return trade

    async def _list(self, window: Window, page_no: int, *, count: bool = False
                    ) -> Mapping[str, Any]:
        return await self.router.call("taobao.trades.sold.increment.get", {
            "start_modified": top_time(window.start), "end_modified": top_time(window.end),
            "page_no": str(page_no), "page_size": str(self.page_size), "fields": "tid,tid_str",
            # use_has_next=true spares TOP the count; only the first call needs total_results.
            "use_has_next": "false" if count else "true",
        })


def _page_number(token: str) -> int:
    if not (token.isascii() and token.isdigit() and int(token) >= 1):
        raise ValueError(f"not a Taobao page token: {token!r}")
    return int(token)


def _total(body: Mapping[str, Any]) -> int:
    try:
        return as_int(body.get("total_results", 0), "total_results")
    except InvalidInput as e:
        raise ChannelError(f"taobao.trades.sold.increment.get: {e}", code="answer") from e


def _tids(body: Mapping[str, Any]) -> list[str]:
    """The listed tids in TOP's order, each once; TOP leaves `trades` out of an empty page."""
    try:
        trades = body.get("trades")
        if trades is None:
            return []
        items = as_mapping(trades, "trades").get("trade")
        if not isinstance(items, list):
            raise InvalidInput("expected {'trade': [...]}", path="trades")
        ids = (_tid(as_mapping(item, f"trades.trade[{i}]"), f"trades.trade[{i}]")
               for i, item in enumerate(items))
        return list(dict.fromkeys(ids))
    except InvalidInput as e:
        raise ChannelError(f"taobao.trades.sold.increment.get: {e}", code="answer") from e


def _tid(trade: Mapping[str, Any], path: str) -> str:
    if trade.get("tid_str") is not None:
        return id_text(trade["tid_str"], f"{path}.tid_str")
    return id_text(trade.get("tid"), f"{path}.tid")


# -- TMC -----------------------------------------------------------------------------------------

S = OrderStatus
CLOSE = "taobao_trade_TradeClose"
# Topics that report a trade status. Every other topic carrying a tid (TradeCreate, TradeChanged,
# TradeLogisticsAddressChanged, TradeModifyFee, TradePartlyRefund, refund_RefundSuccess — a
# sub-order refund that cannot say whether the whole trade was refunded —, ...) asks for a fetch.
STATUS_TOPICS: Mapping[str, OrderStatus] = {
    "taobao_trade_TradeBuyerPay": S.PAID,
    "taobao_trade_TradeSellerShip": S.SHIPPED,
    "taobao_trade_TradeSuccess": S.COMPLETED,
    CLOSE: S.CANCELLED,  # only when the content says TRADE_CLOSED_BY_TAOBAO; see _status
}
CONFIRM_BATCH = 200  # taobao.tmc.messages.confirm takes at most 200 ids


def tmc_delivery(shop: str, message: Mapping[str, Any]) -> Delivery:
    """What one TMC message asks for: a status change, a fetch of its trade, or nothing.

    Reads both the `taobao.tmc.messages.consume` names (`id, topic, pub_time, content`) and the
    SDK / HTTP-push names (`ID, Topic, PubTime, Content`). Unknown topics never fail: with a tid
    they fetch it, without one they do nothing.
    """
    frame = {str(key).replace("_", "").lower(): value for key, value in message.items()}
    topic = as_text(frame.get("topic"), "topic")
    content = _content(frame.get("content"))
    ack = id_text(frame["id"], "id") if frame.get("id") is not None else None
    delivery_id = f"taobao:tmc:{ack or _fingerprint(topic, frame)}"
    if content.get("tid") is None:
        if topic in STATUS_TOPICS:
            raise InvalidInput("required field is missing or null", path="content.tid")
        return Delivery(delivery_id, shop, ack=ack)
    tid = id_text(content["tid"], "content.tid")
    status = _status(topic, content)
    if status is None:
        return Delivery(delivery_id, shop, fetch=[tid], ack=ack)
    change = OrderStatusChanged(
        order_id=canonical_id(Channel.TAOBAO, tid), status=status, source="taobao",
        at=beijing_time(frame.get("pubtime"), "pub_time"), reason=topic)
    return Delivery(delivery_id, shop, status_changes=[change], ack=ack)


def _status(topic: str, content: Mapping[str, Any]) -> OrderStatus | None:
    """The canonical status a status topic reports, None when only the full trade can tell.

    When the content carries the trade `status`, the mapper's table decides (so a paid trade
    Taobao forbids shipping is review_hold here as in the mapper). A TradeClose is cancelled only
    for TRADE_CLOSED_BY_TAOBAO (closed before payment); TRADE_CLOSED means cancelled or refunded
    depending on `pay_time`, which only the full trade has, as has a close without a status.
    """
    default = STATUS_TOPICS.get(topic)
    native = content.get("status")
    if default is None or (native is None and topic == CLOSE):
        return None
    if native is None:
        return default
    return STATUS.get(native) if isinstance(native, str) else None


def _content(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise InvalidInput(f"not JSON: {e}", path="content") from e
    return as_mapping(value, "content")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _fingerprint(topic: str, frame: Mapping[str, Any]) -> str:
    """A stable id for a frame sent without one (HTTP push form): its topic, time and content."""
    parts = json.dumps([topic, frame.get("pubtime"), frame.get("content")], sort_keys=True,
                       ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(parts.encode()).hexdigest()[:32]


class Messages:
    """Frames of the app's TMC queue through `taobao.tmc.messages.consume` / `.confirm`.

    Options `group_name` (default `default`), `tmc_quantity` (10..200 frames a call, default 100),
    plus the router's `base_url`, `sign_method`, `rate_per_s`. TMC redelivers what is not
    confirmed, so a frame is confirmed only after the relay produced it; a frame that cannot be
    read comes as a delivery with `invalid` set, for the DLQ. The queue is the app's:
    when one app serves several shops, put each seller in its own TMC group (`group_name`), or
    every shop's source would consume the others' frames.
    """

    channel: ClassVar[str] = "taobao"

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.shop = shop.shop
        self.router = Router(shop, session, clock)
        self.group = shop.option("group_name", "default")
        self.quantity = int(number_option(shop, "tmc_quantity", "100", 10, 200))

    async def messages(self) -> list[Delivery]:
        body = await self.router.call("taobao.tmc.messages.consume", {
            "group_name": self.group, "quantity": str(self.quantity)}, authorized=False)
        return [self._delivery(frame) for frame in _frames(body)]

    async def confirm(self, deliveries: Sequence[Delivery]) -> None:
        acks = [d.ack for d in deliveries if d.ack is not None]
        for i in range(0, len(acks), CONFIRM_BATCH):
            body = await self.router.call("taobao.tmc.messages.confirm", {
                "group_name": self.group, "s_message_ids": ",".join(acks[i:i + CONFIRM_BATCH])},
                authorized=False)
            if body.get("is_success") is False:
                raise TransientError("taobao.tmc.messages.confirm: TOP did not confirm")

    def _delivery(self, frame: Any) -> Delivery:
        try:
            return tmc_delivery(self.shop, as_mapping(frame, "tmc_message"))
        except InvalidInput as e:
            return self._refused(frame, e)

    def _refused(self, frame: Any, error: InvalidInput) -> Delivery:
        """A frame we cannot read goes to the DLQ and is confirmed: TMC would otherwise resend
        it forever, failing every batch it is part of."""
        original = json.dumps(frame, ensure_ascii=False, default=str).encode()
        ack = _frame_id(frame)
        log.error("taobao/%s: TMC message %s not understood, dead-lettered: %s",
                  self.shop, ack, error)
        fingerprint = "sha256:" + hashlib.sha256(original).hexdigest()[:32]
        return Delivery(f"taobao:tmc:{ack or fingerprint}", self.shop, ack=ack,
                        invalid=str(error), original=original)


def _frame_id(frame: Any) -> str | None:
    """The message id of a frame that may be malformed (`id` or the SDK's `ID`), if readable."""
    if not isinstance(frame, Mapping):
        return None
    ids = [v for k, v in frame.items() if str(k).replace("_", "").lower() == "id"]
    try:
        return id_text(ids[0], "id") if ids else None
    except InvalidInput:
        return None


def _frames(body: Mapping[str, Any]) -> list[Any]:
    """`{"messages": {"tmc_message": [...]}}`; TOP leaves `messages` out when the queue is empty."""
    messages = body.get("messages")
    if messages is None:
        return []
    frames = messages.get("tmc_message") if isinstance(messages, Mapping) else None
    if not isinstance(frames, list):
        raise ChannelError("taobao.tmc.messages.consume: expected messages.tmc_message[]",
                           code="answer")
    return frames
