"""Pinduoduo's network side: the signed open-API router client and the message WebSocket.

Sources for the contract (PDD's own pages are behind a login): the field and limit comments of
the generated SDKs (lywzx/pdd-node-sdk `PddOrderNumberListIncrementGet.ts`,
`PddOrderInformationGet.ts`), the signing tests of whalesky-labs/pdd-sdk-php (`Md5SignerTest`,
`MessageClientTest`) and the message clients of bububa/openpdd (`core/client.go`,
`api/pmc/message.go`). Where none of them says, the choice is marked ASSUMPTION.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
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
from ingest.push import Delivery
from normalize.fields import as_int, as_mapping, as_text, child, fen, id_text, required
from normalize.pdd import order_sn
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput, TransientError
from schemas.events import OrderStatusChanged
from schemas.order import Channel, OrderStatus, canonical_id

log = logging.getLogger(__name__)

GATEWAY = "https://gw-api.pinduoduo.com/api/router"
MESSAGE_SERVICE = "wss://message-api.pinduoduo.com"
INCREMENT = "pdd.order.number.list.increment.get"
INFORMATION = "pdd.order.information.get"
PAGE_SIZE = 100  # the documented maximum
# The SDK's limiter for the increment API: 2500 calls per 60 s (limiterLevel 1, which we take to
# be per app and mall). A bucket of 40 refilled at 41/s never exceeds 2500 in any minute.
RATE_PER_S, BURST = 41.0, 40
TIMEOUT = aiohttp.ClientTimeout(total=30)

# ASSUMPTION: PDD publishes no machine-readable code table we could find. 70031 (调用过于频繁)
# is the commonly reported throttling answer and 52101/52102 the gateway's limiter answers;
# 50000 (系统内部错误) and 52103 (服务暂不可用) are "busy". The message words back the codes up.
THROTTLED_CODES = frozenset({"70031", "52101", "52102"})
BUSY_CODES = frozenset({"50000", "52103"})
THROTTLED_WORDS = ("频繁", "限流")
BUSY_WORDS = ("繁忙", "暂不可用", "稍后重试")


def sign(params: Mapping[str, str], secret: str) -> str:
    """PDD's request signature: MD5(secret + k1v1k2v2... sorted by key + secret), upper hex.

    `sign` itself and empty values take no part; the client never sends empty values either.
    An object-valued business parameter is sent, and so signed, as its JSON text.
    """
    text = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v != "")
    digest = hashlib.md5(f"{secret}{text}{secret}".encode(), usedforsecurity=False)
    return digest.hexdigest().upper()


class Client:
    """Pulls one PDD shop's orders through the open-API router.

    `shop` needs the credentials `client_id`, `client_secret` and `access_token`; its options may
    set `base_url` (the router, default production) and `rate_per_s`. `session` belongs to the
    caller; `clock` gives the signed timestamps.
    """

    channel: ClassVar[str] = "pdd"
    max_window: ClassVar[timedelta] = timedelta(minutes=30)  # PDD refuses a wider one
    # PDD indexes orders late: its docs ask windows to end 3 minutes behind its clock.
    end_lag: ClassVar[timedelta] = timedelta(minutes=3)

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.shop = shop
        self.session = session
        self.clock = clock
        self.url = shop.option("base_url", GATEWAY)
        self.limiter = RateLimiter(float(shop.option("rate_per_s", str(RATE_PER_S))), BURST)

    async def fetch(self, window: Window, page: str | None) -> Page:
        """One page of the orders updated in the window, walking the pages from the last back.

        PDD's note on this API: page from the last page back, or orders updated while you page
        shift the later pages under you and some are never seen. So the first call (token None)
        reads page 1 with the total, the next ones go from the last page down to page 1 again;
        an order that leaves the window meanwhile only makes a later page repeat one.
        """
        number = 1 if page is None else int(page)
        body = await self._call(INCREMENT, {
            "start_updated_at": str(_unix(window.start)),
            "end_updated_at": str(_unix(window.end)),
            "is_lucky_flag": "0",  # lottery orders too
            "order_status": "5",  # every shipping state
            "refund_status": "5",  # every after-sale state
            "page": str(number),
            "page_size": str(PAGE_SIZE),
            "use_has_next": "false" if page is None else "true",  # only `false` has the total
        })
        answer = _part(body, "order_sn_increment_get_response", INCREMENT)
        # The elements are full order objects, the shape of pdd.order.information.get.
        orders = _orders(answer.get("order_sn_list"), INCREMENT)
        return Page(orders, _next_page(page, answer))

    async def fetch_order(self, native_id: str) -> Mapping[str, Any] | None:
        """`pdd.order.information.get`; None when PDD answers without an order."""
        body = await self._call(INFORMATION, {"order_sn": native_id})
        info = _part(body, "order_info_get_response", INFORMATION).get("order_info")
        return info if isinstance(info, Mapping) and info else None

    async def _call(self, api: str, business: Mapping[str, str]) -> Mapping[str, Any]:
        await self.limiter.acquire()  # first, so a wait never ages the signed timestamp
        params = {
            "type": api,
            "client_id": self.shop.secret("client_id"),
            "access_token": self.shop.secret("access_token"),
            "timestamp": str(_unix(self.clock())),
            "data_type": "JSON",
            "version": "V1",
            **business,
        }
        params["sign"] = sign(params, self.shop.secret("client_secret"))
        try:
            async with self.session.post(self.url, data=params, timeout=TIMEOUT) as response:
                body = await read_json(response, api)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"{api}: {type(e).__name__}: {e}") from e
        return _checked(body, api)


def _unix(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: windows and clocks must be aware")
    return math.floor(moment.timestamp())


def _checked(body: Any, api: str) -> Mapping[str, Any]:
    """The answer, or PDD's `error_response` as Throttled, TransientError or ChannelError."""
    if not isinstance(body, Mapping):
        raise ChannelError(f"{api}: expected a JSON object, got {type(body).__name__}")
    error = body.get("error_response")
    if error is None:
        return body
    if not isinstance(error, Mapping):
        raise ChannelError(f"{api}: PDD error {error!r}")
    code = str(error.get("error_code"))
    words = f"{error.get('error_msg') or ''} {error.get('sub_msg') or ''}".strip()
    text = f"{api}: PDD error {code}: {words or 'no message'}"
    if error.get("request_id"):
        text += f" [request_id {error['request_id']}]"
    if code in THROTTLED_CODES or any(w in words for w in THROTTLED_WORDS):
        raise Throttled(text)  # PDD names no pause; the poller backs off
    if code in BUSY_CODES or any(w in words for w in BUSY_WORDS):
        raise TransientError(text)
    raise ChannelError(text, code=code)


def _part(body: Mapping[str, Any], key: str, api: str) -> Mapping[str, Any]:
    part = body.get(key)
    if not isinstance(part, Mapping):
        keys = ", ".join(sorted(map(str, body))[:5]) or "none"
        raise ChannelError(f"{api}: expected {key!r} in the answer, got keys {keys}")
    return part


def _orders(value: Any, api: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(o, Mapping) for o in value):
        raise ChannelError(f"{api}: order_sn_list is not an array of order objects")
    return value


def _next_page(page: str | None, answer: Mapping[str, Any]) -> str | None:
    if page is None:
        total = answer.get("total_count")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ChannelError(f"{INCREMENT}: expected a total_count, got {total!r}")
        last = math.ceil(total / PAGE_SIZE)
        return str(last) if last > 1 else None
    number = int(page)
    return str(number - 1) if number > 1 else None


# --- the message service -------------------------------------------------------------------

S = OrderStatus
CONTENT = "message.content"
# What a message says about the order when it says enough: TradeConfirmed (交易确认: the group
# formed and the order is paid, confirm_status 1), TradeSellerShip (卖家发货), TradeSuccess
# (交易成功: the buyer confirmed receipt, order_status 3, which normalize.pdd reads as delivered).
TRADE_STATUS: Mapping[str, OrderStatus] = {
    "pdd_trade_TradeConfirmed": S.PAID,
    "pdd_trade_TradeSellerShip": S.SHIPPED,
    "pdd_trade_TradeSuccess": S.DELIVERED,
}
# The first notice of an order: fetch it in full as well, nothing about it is known yet.
NEW_ORDER = frozenset({"pdd_trade_TradeConfirmed"})
# ASSUMPTION: the name of the "money is back" message; RefundCreated, RefundAgreeAgreement,
# RefundClosed, ... only move the after-sale along and are fetched.
REFUND_SUCCESS = frozenset({"pdd_refund_RefundSuccess"})
ORDER_TOPICS = ("pdd_trade_", "pdd_refund_")
MAX_BATCH = 200
BATCH_GAP_S = 0.2  # once frames flow, how long to wait for the next before returning
MAX_MS = 32503680000000  # year 3000
CONNECT_S = 30.0
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)


def message_path(client_id: str, millis: int, secret: str) -> str:
    """The WebSocket path PDD authenticates: /message/{client_id}/{ms}/{base64(md5 hex)}.

    The digest is MD5 of client_id + ms + secret as lower-case hex, then that hex text in
    base64 (so 44 characters, URL-quoted because base64 may carry `/`, `+` and `=`).
    """
    digest = hashlib.md5(f"{client_id}{millis}{secret}".encode(), usedforsecurity=False)
    token = base64.b64encode(digest.hexdigest().encode()).decode()
    return f"/message/{quote(client_id, safe='')}/{millis}/{quote(token, safe='')}"


def frame_delivery(shop: str, frame: Mapping[str, Any]) -> Delivery:
    """What one message frame asks orderhub to do; heartbeats and acks ask nothing.

    `delivery_id` is `pdd:msg:<id>` (PDD resends an unacknowledged frame under the same id),
    `ack` the id as exact digits (ids exceed 2^53). A malformed frame is InvalidInput.
    """
    command = frame.get("commandType")
    if command != "Common":
        return Delivery(delivery_id=f"pdd:{command}:{frame.get('time')}", shop=shop)
    message_id = id_text(required(frame, "id"), "id")
    at = _sent_at(frame)
    message = as_mapping(required(frame, "message"), "message")
    topic = as_text(required(message, "type", "message"), "message.type")
    delivery_id = f"pdd:msg:{message_id}"
    if not topic.startswith(ORDER_TOPICS):  # goods, chat, ...: acknowledged, nothing to do
        return Delivery(delivery_id=delivery_id, shop=shop, ack=message_id)
    content = _content(message)
    tid = order_sn(required(content, "tid", CONTENT), child(CONTENT, "tid"))
    status = _status(topic, content)
    changes = [] if status is None else [OrderStatusChanged(
        order_id=canonical_id(Channel.PDD, tid), status=status, at=at, source="pdd",
        reason=topic)]
    fetch = [tid] if status is None or topic in NEW_ORDER else []
    return Delivery(delivery_id=delivery_id, shop=shop, status_changes=changes, fetch=fetch,
                    ack=message_id)


def _sent_at(frame: Mapping[str, Any]) -> datetime:
    key = "sendTime" if frame.get("sendTime") is not None else "time"
    millis = as_int(required(frame, key), key)
    if not 0 < millis < MAX_MS:
        raise InvalidInput(f"not a plausible time in milliseconds: {millis}", path=key)
    return datetime.fromtimestamp(millis // 1000, SHANGHAI) + timedelta(milliseconds=millis % 1000)


def _content(message: Mapping[str, Any]) -> Mapping[str, Any]:
    text = as_text(required(message, "content", "message"), CONTENT)
    try:
        content = as_mapping(json.loads(text), CONTENT)
    except ValueError as e:
        raise InvalidInput(f"not JSON: {e}", path=CONTENT) from e
    mall, frame_mall = content.get("mall_id"), message.get("mallID")
    if mall is not None and frame_mall is not None and str(mall) != str(frame_mall):
        raise InvalidInput(f"mall {mall} in a frame of mall {frame_mall}",
                           path=child(CONTENT, "mall_id"))
    return content


def _status(topic: str, content: Mapping[str, Any]) -> OrderStatus | None:
    if topic in REFUND_SUCCESS:
        return S.REFUNDED if _whole_refund(content) else None
    return TRADE_STATUS.get(topic)


def _whole_refund(content: Mapping[str, Any]) -> bool:
    """True when the content shows the whole order refunded; amounts in messages are FEN.

    ASSUMPTION: PDD's refund content carries `refund_fee` (fen); only when it also carries the
    order's `order_amount` (fen) can a message alone say "whole order". Else the order is fetched.
    """
    refund, total = content.get("refund_fee"), content.get("order_amount")
    if refund is None or total is None:
        return False
    return fen(refund, child(CONTENT, "refund_fee")) >= fen(total, child(CONTENT, "order_amount"))


class Messages:
    """PDD's message WebSocket for one shop: frames in, `Ack` frames out.

    `shop` needs the credentials `client_id` and `client_secret`; its options may set `ws_url`
    (default production) and `wait_s` (how long `messages()` waits for a first frame, default
    3). `session` belongs to the caller; `clock` gives the signed connection time. The connection
    opens on the first call and again after PDD closes it; PDD then resends what was not
    acknowledged, under the same ids. A frame that cannot be read comes as a delivery with
    `invalid` set, for the DLQ.
    """

    channel: ClassVar[str] = "pdd"

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.shop = shop
        self.session = session
        self.clock = clock
        self.url = shop.option("ws_url", MESSAGE_SERVICE).rstrip("/")
        self.wait_s = float(shop.option("wait_s", "3"))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reading: asyncio.Future[aiohttp.WSMessage] | None = None  # a receive() in flight
        self.unacked: dict[str, dict[str, Any]] = {}  # ack id -> the fields its Ack repeats

    async def messages(self) -> list[Delivery]:
        """The frames that arrive within `wait_s` (then while they keep coming), as deliveries."""
        deliveries: list[Delivery] = []
        for _ in range(2):  # once more on a new connection when PDD had closed the old one
            ws = await self._live()
            if not await self._receive(ws, deliveries) or deliveries:
                break
        return deliveries

    async def confirm(self, deliveries: Sequence[Delivery]) -> None:
        """Send an Ack for every delivery with an `ack` id (on a new connection if need be)."""
        acks = [d.ack for d in deliveries if d.ack is not None]
        if not acks:
            return
        ws = await self._connect()
        for ack in acks:
            # The Ack repeats the frame's sendTime, type and mallID when we still have them.
            fields = self.unacked.pop(ack, {})
            await self._send(ws, {"id": int(ack), "commandType": "Ack", "time": self._millis(),
                                  **fields})

    async def close(self) -> None:
        """Close the connection with a closing handshake, so PDD reads the Acks sent before."""
        ws, self.ws = self.ws, None
        reading, self.reading = self.reading, None
        if ws is not None:
            await ws.close()
        if reading is not None:  # it ends with the handshake it takes part in
            await asyncio.gather(reading, return_exceptions=True)

    async def _live(self) -> aiohttp.ClientWebSocketResponse:
        """An open connection, our heartbeat sent on it (a failed send means PDD closed it)."""
        ws = await self._connect()
        try:
            await ws.send_str(json.dumps(self._heartbeat()))
        except (aiohttp.ClientError, ConnectionError):
            self.ws = None
            ws = await self._connect()
            await self._send(ws, self._heartbeat())
        return ws

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, deliveries: list[Delivery]
                       ) -> bool:
        """Read frames into `deliveries` until a quiet moment; True when the connection ended."""
        timeout = self.wait_s
        while len(deliveries) < MAX_BATCH:
            received = await self._next(ws, timeout)
            if received is None:
                return False
            if received.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                delivery = self._read(received.data)
                if delivery is not None:
                    deliveries.append(delivery)
                    timeout = BATCH_GAP_S
                continue
            self.ws = None  # closed or broken: reconnect
            if received.type is aiohttp.WSMsgType.ERROR and not deliveries:
                raise TransientError(f"PDD message service: {received.data!r}")
            return True
        return False

    async def _next(self, ws: aiohttp.ClientWebSocketResponse, timeout: float
                    ) -> aiohttp.WSMessage | None:
        """The next message, or None after `timeout` with the read left pending for later.

        Not `ws.receive(timeout)`: after one timed-out receive aiohttp closes without the
        closing handshake, and Acks still unread by PDD would be lost with the connection.
        """
        if self.reading is None:
            self.reading = asyncio.ensure_future(ws.receive())
        done, _ = await asyncio.wait({self.reading}, timeout=timeout)
        if not done:
            return None
        reading, self.reading = self.reading, None
        return reading.result()

    def _heartbeat(self) -> dict[str, Any]:
        return {"commandType": "HeartBeat", "time": self._millis()}

    def _read(self, data: str | bytes) -> Delivery | None:
        try:
            frame = json.loads(data)
        except (ValueError, RecursionError) as e:
            return self._refused(data, None, f"not JSON: {e}")
        try:
            delivery = frame_delivery(self.shop.shop, as_mapping(frame, ""))
        except (ValueError, InvalidInput) as e:
            return self._refused(data, frame, str(e))
        if frame.get("commandType") == "Fail":
            log.warning("pdd %s: the message service reports a failure: %s", self.shop.shop,
                        str(frame.get("message"))[:200])
        if delivery.ack is None:
            return None
        self.unacked[delivery.ack] = _ack_fields(frame)
        return delivery

    def _refused(self, data: str | bytes, frame: Any, reason: str) -> Delivery:
        """A frame we cannot read goes to the DLQ and, when its id is readable, is acknowledged:
        PDD would otherwise resend it on every connection."""
        original = data.encode() if isinstance(data, str) else data
        ack = _frame_id(frame)
        if ack is not None:
            self.unacked[ack] = _ack_fields(frame)
        log.error("pdd %s: message frame %s not understood, dead-lettered: %s", self.shop.shop,
                  ack, reason)
        fingerprint = "sha256:" + hashlib.sha256(original).hexdigest()[:32]
        return Delivery(f"pdd:msg:{ack or fingerprint}", self.shop.shop, ack=ack, invalid=reason,
                        original=original)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is not None and not self.ws.closed:
            return self.ws
        if self.reading is not None:  # a read on the connection that ended
            self.reading.cancel()
            self.reading = None
        client_id = self.shop.secret("client_id")
        path = message_path(client_id, self._millis(), self.shop.secret("client_secret"))
        try:
            async with asyncio.timeout(CONNECT_S):
                self.ws = await self.session.ws_connect(self.url + path, timeout=WS_TIMEOUT)
        except aiohttp.WSServerHandshakeError as e:
            # `from None`: the error's repr holds the signed URL.
            if 400 <= e.status < 500 and e.status not in (408, 429):
                raise ChannelError("PDD message service refused the connection "
                                   "(client_id or client_secret?)", code=str(e.status)) from None
            raise TransientError(f"PDD message service: HTTP {e.status}") from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"PDD message service at {self.url} unreachable: "
                                 f"{type(e).__name__}") from None  # its text may hold the path
        return self.ws

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, frame: Mapping[str, Any]) -> None:
        try:
            await ws.send_str(json.dumps(frame))
        except (aiohttp.ClientError, ConnectionError) as e:
            self.ws = None
            raise TransientError(f"PDD message service: {type(e).__name__}: {e}") from e

    def _millis(self) -> int:
        return math.floor(self.clock().timestamp() * 1000)


def _frame_id(frame: Any) -> str | None:
    """The id of a frame that may be malformed, when it is readable as exact digits."""
    if not isinstance(frame, Mapping) or frame.get("id") is None:
        return None
    try:
        return id_text(frame["id"], "id")
    except InvalidInput:
        return None


def _ack_fields(frame: Mapping[str, Any]) -> dict[str, Any]:
    """What an Ack repeats of its frame: the sendTime, and the message's type and mallID."""
    message = frame.get("message")
    if not isinstance(message, Mapping):
        message = {}
    return {"sendTime": frame.get("sendTime"), "type": message.get("type"),
            "mallID": message.get("mallID")}
