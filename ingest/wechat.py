"""WeChat Channels shop adapter: unwrapping, reading the id, verifying pushes; pull in wechat_api.

Pushes (developers.weixin.qq.com/doc/channels/dev_before/base/message_push): WeChat signs each
POST and the URL-check GET with query `signature = sha1(sorted([token, timestamp, nonce]) joined)`.
That signature does not cover the body: in plaintext mode a captured signature could carry another
body until its timestamp goes stale, which is why the age window stays short. Secure mode adds
`encrypt_type=aes`, `msg_signature = sha1(sorted([token, timestamp, nonce, Encrypt]))` and an AES
`Encrypt` body. The Channels shop offers only secure mode with JSON; decrypting needs the shop's
EncodingAESKey and an AES library, neither of which the hub has yet, so signed encrypted pushes are
refused as InvalidInput (dead-lettered, kept) and the poller still picks the orders up.

Order events: `{"ToUserName": <shop's original id>, "FromUserName", "CreateTime", "MsgType":
"event", "Event": "channels_ec_order_<new|pay|wait_shipping|deliver|confirm|cancel|settle|
ext_info_update>", "order_info": {"order_id": <number>, "cancel_type"|"finish_delivery"|…}}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.files import Document, read_documents
from ingest.push import MAX_AGE_S, Delivery, PushRequest, PushSecrets, Unauthorized
from ingest.wechat_api import Client
from ingest.wrappers import order_object
from schemas.errors import ConfigurationError, InvalidInput
from schemas.events import OrderStatusChanged
from schemas.order import Channel, OrderStatus, canonical_id

__all__ = ["Client", "native_id", "read", "unwrap", "verify_echo", "verify_push"]

EXPECTED = (
    "a WeChat Channels order (with an 'order_id') or a /channels/ec/order/get response "
    "{'errcode': 0, 'order': {...}}"
)


def read(path: Path) -> Iterator[Document]:
    """Saved API responses and exported orders are JSON: an object, an array or JSON lines."""
    return read_documents(path)


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    """The order in a bare order or an order/get response; an API error is InvalidInput."""
    if not isinstance(document, Mapping):
        raise InvalidInput(f"expected {EXPECTED}, got {type(document).__name__}")
    code = document.get("errcode", 0)
    if code not in (0, "0") or isinstance(code, bool):
        raise InvalidInput(f"WeChat API error {code!r}: {document.get('errmsg')!r}", path="errcode")
    if "order" in document:
        return [_order(document["order"], "order")]
    if "order_id" in document:
        return [document]
    if "order_id_list" in document:
        raise InvalidInput(
            "an order list response carries only order ids: fetch each order "
            "with /channels/ec/order/get",
            path="order_id_list",
        )
    keys = ", ".join(sorted(map(str, document))[:5]) or "none"
    raise InvalidInput(f"expected {EXPECTED}, got an object with keys {keys}")


def _order(value: Any, path: str) -> Mapping[str, Any]:
    return order_object(value, path, label="a WeChat Channels order object", id_key="order_id")


def native_id(payload: Mapping[str, Any]) -> str:
    """The `order_id` as a string of digits, exactly as sent (ids exceed 2^53)."""
    value = payload.get("order_id")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    raise InvalidInput(f"expected a positive integer order id, got {value!r}", path="order_id")


S = OrderStatus
# Events that say what the order became. `wait_shipping` follows payment once the order may ship
# (status 20, paid). `deliver` is sent for partial parcels too; the mapper reads those as shipped.
STATUS_EVENTS: Mapping[str, OrderStatus] = {
    "channels_ec_order_pay": S.PAID,
    "channels_ec_order_wait_shipping": S.PAID,
    "channels_ec_order_deliver": S.SHIPPED,
    "channels_ec_order_confirm": S.COMPLETED,
    "channels_ec_order_cancel": S.CANCELLED,
}
CANCEL = "channels_ec_order_cancel"
# cancel_type 3: every item went through after-sale and the order closed (status 200): refunded.
CANCEL_AFTER_REFUND = "3"
SUCCESS = b"success"


def verify_push(request: PushRequest, secrets: PushSecrets, now: datetime) -> Delivery:
    """The delivery one signed POST asks for; Unauthorized if it is not WeChat's, or stale."""
    timestamp, nonce = _signed_moment(request, secrets, now)
    if _secure_mode(request.query):
        _verify_encrypted(request, secrets.secret, timestamp, nonce)
        raise InvalidInput("WeChat push in secure (AES) mode: decrypting is not supported yet; "
                           "the poller still fetches these orders")
    _verify_signature(request.query, secrets.secret, timestamp, nonce)
    return _delivery(_message(request.body))


def verify_echo(request: PushRequest, secrets: PushSecrets, now: datetime) -> bytes:
    """The `echostr` WeChat's URL check wants back, once its signature holds."""
    timestamp, nonce = _signed_moment(request, secrets, now)
    _verify_signature(request.query, secrets.secret, timestamp, nonce)
    echo = request.query.get("echostr")
    if not echo:
        raise InvalidInput("URL check without echostr", path="echostr")
    return echo.encode()


def signature(*parts: str) -> str:
    """WeChat's push signature: sha1 of the parts sorted and joined, lower-case hex."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()  # noqa: S324 - the channel's choice


def _signed_moment(request: PushRequest, secrets: PushSecrets, now: datetime
                   ) -> tuple[str, str]:
    """The signed timestamp and nonce, refused when missing, stale or from the future."""
    if not secrets.secret:
        raise Unauthorized("no WeChat push token is configured")
    timestamp, nonce = request.query.get("timestamp"), request.query.get("nonce")
    if not timestamp or not nonce:
        raise Unauthorized("push without timestamp or nonce")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise Unauthorized(f"push timestamp is not Unix seconds: {timestamp[:20]!r}")
    max_age = _max_age(secrets)
    skew = now.timestamp() - int(timestamp)
    if abs(skew) > max_age:
        when = "old" if skew > 0 else "in the future"
        raise Unauthorized(f"push timestamp {timestamp} is {abs(skew):.0f} s {when}")
    return timestamp, nonce


def _max_age(secrets: PushSecrets) -> float:
    value = secrets.options.get("max_age_s", str(MAX_AGE_S))
    try:
        return float(value)
    except ValueError:
        raise ConfigurationError(f"WeChat push option max_age_s is not seconds: {value!r}"
                                 ) from None


def _verify_signature(query: Mapping[str, str], token: str, timestamp: str, nonce: str) -> None:
    sent = query.get("signature", "")
    if not hmac.compare_digest(sent.encode(), signature(token, timestamp, nonce).encode()):
        raise Unauthorized("push signature does not match")


def _secure_mode(query: Mapping[str, str]) -> bool:
    return "msg_signature" in query or query.get("encrypt_type", "raw") != "raw"


def _verify_encrypted(request: PushRequest, token: str, timestamp: str, nonce: str) -> None:
    """Check msg_signature, which covers the ciphertext, so an unsigned body is refused as such."""
    # The ciphertext has to be read out of the body first; json.loads expands no entities.
    try:
        encrypted = json.loads(request.body).get("Encrypt")
    except (ValueError, AttributeError):
        encrypted = None
    if not isinstance(encrypted, str):
        raise Unauthorized("secure-mode push without an Encrypt field to verify")
    expected = signature(token, timestamp, nonce, encrypted)
    if not hmac.compare_digest(request.query.get("msg_signature", "").encode(), expected.encode()):
        raise Unauthorized("push msg_signature does not match")


def _message(body: bytes) -> Mapping[str, Any]:
    if body.lstrip()[:1] == b"<":
        raise InvalidInput("XML push: the Channels shop pushes JSON, configure JSON")
    try:
        message = json.loads(body)
    except ValueError as e:
        raise InvalidInput(f"push body is not JSON: {e}") from e
    if not isinstance(message, Mapping):
        raise InvalidInput(f"push body is a JSON {type(message).__name__}, not an object")
    if "Encrypt" in message:
        raise InvalidInput("encrypted push body: decrypting is not supported yet")
    return message


def _delivery(message: Mapping[str, Any]) -> Delivery:
    """Status changes and fetches for an order event; other events are acknowledged, no more."""
    shop, sender = _text(message, "ToUserName"), _text(message, "FromUserName")
    created, event = _create_time(message), message.get("Event")
    info = _order_info(message) if message.get("MsgType") == "event" else {}
    order_id = _event_order_id(info)
    # WeChat's retry dedupe key is FromUserName + CreateTime; event and order keep two events
    # of one second apart.
    delivery_id = f"wechat:{sender}:{created}:{event}:{order_id or ''}"
    if order_id is None or not isinstance(event, str):
        return Delivery(delivery_id, shop, response=SUCCESS)
    status = _event_status(event, info)
    changes = [] if status is None else [OrderStatusChanged(
        order_id=canonical_id(Channel.WECHAT, order_id), status=status,
        at=datetime.fromtimestamp(created, UTC), source=Channel.WECHAT.value, reason=event)]
    # A new order, a cancellation (to learn what was refunded) or an event that says no status:
    # the poller fetches the whole order.
    fetch = [order_id] if status is None or event == CANCEL else []
    return Delivery(delivery_id, shop, status_changes=changes, fetch=fetch, response=SUCCESS)


def _event_status(event: str, info: Mapping[str, Any]) -> OrderStatus | None:
    if event == CANCEL and str(info.get("cancel_type")) == CANCEL_AFTER_REFUND:
        return S.REFUNDED
    return STATUS_EVENTS.get(event)


def _order_info(message: Mapping[str, Any]) -> Mapping[str, Any]:
    info = message.get("order_info")
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise InvalidInput(f"expected an object, got {type(info).__name__}", path="order_info")
    return info


def _event_order_id(info: Mapping[str, Any]) -> str | None:
    if info.get("order_id") is None:
        return None
    try:
        return native_id(info)
    except InvalidInput as e:
        raise InvalidInput(str(e), path="order_info.order_id") from e


def _text(message: Mapping[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"expected a non-empty string, got {value!r}", path=key)
    return value


def _create_time(message: Mapping[str, Any]) -> int:
    value = message.get("CreateTime")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidInput(f"expected Unix seconds, got {value!r}", path="CreateTime")
    return value
