"""Douyin shop (抖店) adapter: unwrapping and reading ids, and verifying its pushed messages."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.douyin_api import Client, error_text, param_json, sign
from ingest.files import Document, read_documents
from ingest.push import Delivery, PushRequest, PushSecrets, Unauthorized
from ingest.wrappers import order_array, order_object
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError, InvalidInput
from schemas.events import OrderStatusChanged
from schemas.order import Channel, OrderStatus, canonical_id

__all__ = [
    "Client", "event_sign", "native_id", "param_json", "read", "sign", "unwrap", "verify_push",
]

EXPECTED = (
    "a Douyin shop order (with an 'order_id'),"
    " {'code': 10000, 'data': {'shop_order_detail': {...}}}"
    " or {'code': 10000, 'data': {'shop_order_list': [...]}}"
)
SUCCESS = 10000
DETAIL = "shop_order_detail"
LIST = "shop_order_list"


def read(path: Path) -> Iterator[Document]:
    """Douyin API responses and exports are JSON: an object, an array or JSON lines."""
    return read_documents(path)


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    """The orders in a bare order or an order.* response; a failed response is InvalidInput."""
    if not isinstance(document, Mapping):
        raise InvalidInput(f"expected {EXPECTED}, got {type(document).__name__}")
    if "order_id" in document:
        return [document]
    if "code" in document:
        return _response(document)
    keys = ", ".join(sorted(map(str, document))[:5]) or "none"
    raise InvalidInput(f"expected {EXPECTED}, got an object with keys {keys}")


def _response(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    code = document["code"]
    if not ((type(code) is int and code == SUCCESS) or code == str(SUCCESS)):
        raise InvalidInput(error_text(document), path="code")
    data = document.get("data")
    if not isinstance(data, Mapping):
        raise InvalidInput(f"expected an object, got {type(data).__name__}", path="data")
    if DETAIL in data:
        return [_order(data[DETAIL], f"data.{DETAIL}")]
    if LIST in data:
        return order_array(data[LIST], f"data.{LIST}", _order)
    raise InvalidInput(f"expected data.{DETAIL} or data.{LIST}", path="data")


def _order(value: Any, path: str) -> Mapping[str, Any]:
    return order_object(value, path, label="a Douyin shop order", id_key="order_id")


def native_id(payload: Mapping[str, Any]) -> str:
    """The shop order's `order_id` as a string of digits, exactly (19 digits exceed 2^53)."""
    value = payload.get("order_id")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    raise InvalidInput(f"expected a positive integer order id, got {value!r}", path="order_id")


# Push messages (消息推送): POST `[{"tag": "101", "msg_id": "…", "data": "<json string>"}, …]`,
# header `event-sign` = md5(app_key + raw body + app_secret) in lowercase hex and `app-id` = the
# app key (doudian-sdk-golang `message/doudian_sign.go`; minibear2021/doudian `callback`). Tags
# and their fields: doudian-sdk-golang `message/*.go` (op.jinritemai.com message-docs/30, /31).
RESPONSE = b'{"code":0,"msg":"success"}'
TEST_TAG = "0"  # the message Douyin sends when the push URL is set up: acknowledge, nothing else
S = OrderStatus
STATUS_TAGS: Mapping[str, OrderStatus] = {
    "101": S.PAID, "102": S.SHIPPED, "103": S.COMPLETED, "106": S.CANCELLED,
}
# Shipment and completion change nothing in the order but its status; every other order message
# (created 100, paid 101, address 105, cancelled 106 — refund or plain cancel? —, part shipped 108,
# amount 109, paid awaiting handling 110, after-sale 2xx) asks for the order in full.
STATUS_ONLY_TAGS = frozenset({"102", "103"})
# When each tag says its event happened (after-sale messages carry apply_time/update_time).
TIME_FIELDS: Mapping[str, str] = {
    "100": "create_time", "101": "pay_time", "102": "update_time", "103": "complete_time",
    "105": "update_time", "106": "cancel_time", "108": "update_time", "109": "modify_time",
}
# The header carries no signed timestamp; the signed body does, in each message's event time.
# Douyin redelivers a failed push for a while (at-least-once, deduplicated on delivery_id), so
# only refuse bodies far older than any retry: a week, unless `max_age_s` says otherwise.
MAX_AGE_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Message:
    """One pushed message, parsed."""

    tag: str
    msg_id: str
    data: Mapping[str, Any]
    path: str


def event_sign(app_key: str, secret: str, body: bytes) -> str:
    """The `event-sign` Douyin puts on a push: md5(app_key + body + app_secret), lowercase hex."""
    return hashlib.md5(app_key.encode() + body + secret.encode()).hexdigest()  # noqa: S324


def verify_push(request: PushRequest, secrets: PushSecrets, now: datetime) -> Delivery:
    """The orders, status changes and fetches one signed Douyin push carries.

    One POST may carry several messages: the delivery id is `douyin:` + sha256 of its sorted
    `msg_id`s, so a redelivery of the same batch is recognised. Refuses (Unauthorized) a missing
    or wrong `event-sign` or `app-id` and a body whose newest event is older than `max_age_s`.
    """
    _verify(request, secrets)
    messages = _messages(request.body)
    _check_age(messages, secrets, now)
    changes: list[OrderStatusChanged] = []
    fetch: list[str] = []
    for message in messages:
        _events(message, now, changes, fetch)
    ids = "\n".join(sorted(m.msg_id for m in messages))
    return Delivery(
        delivery_id=f"douyin:{hashlib.sha256(ids.encode()).hexdigest()}",
        shop=_shop(messages),
        status_changes=changes,
        fetch=list(dict.fromkeys(fetch)),
        response=RESPONSE,
        content_type="application/json",
    )


def _verify(request: PushRequest, secrets: PushSecrets) -> None:
    if not secrets.secret or not secrets.app_key:
        raise Unauthorized("Douyin pushes cannot be verified: app key or secret not configured")
    given = request.headers.get("event-sign")
    if not given:
        raise Unauthorized("Douyin push without an event-sign header")
    expected = event_sign(secrets.app_key, secrets.secret, request.body)
    if not hmac.compare_digest(given.strip().lower().encode(errors="replace"), expected.encode()):
        raise Unauthorized("Douyin push event-sign does not match its body")
    app_id = request.headers.get("app-id")
    if app_id is not None and app_id.strip() != secrets.app_key:
        raise Unauthorized("Douyin push for another app (app-id)")


def _messages(body: bytes) -> list[Message]:
    try:
        document = json.loads(body)
    except ValueError as e:
        raise InvalidInput(f"a Douyin push must be a JSON array of messages: {e}") from e
    if not isinstance(document, list) or not document:
        raise InvalidInput("a Douyin push must be a non-empty JSON array of messages")
    return [_message(item, f"[{i}]") for i, item in enumerate(document)]


def _message(value: Any, path: str) -> Message:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"expected a message object, got {type(value).__name__}", path=path)
    tag = _id(value.get("tag"), f"{path}.tag", digits=True)
    msg_id = _id(value.get("msg_id"), f"{path}.msg_id", digits=False)
    if tag == TEST_TAG:
        return Message(tag, msg_id, {}, path)
    data = value.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as e:
            raise InvalidInput(f"expected a JSON object in a string: {e}", f"{path}.data") from e
    if not isinstance(data, Mapping):
        raise InvalidInput(f"expected an object, got {type(data).__name__}", path=f"{path}.data")
    return Message(tag, msg_id, data, path)


def _events(message: Message, now: datetime, changes: list[OrderStatusChanged],
           fetch: list[str]) -> None:
    """Add what one message asks for: a status change, a fetch of the order, or both."""
    if message.tag == TEST_TAG or "p_id" not in message.data:
        return  # the setup test, or a message about something other than an order
    order = _id(message.data["p_id"], f"{message.path}.data.p_id", digits=True)
    status = STATUS_TAGS.get(message.tag)
    if status is not None:
        changes.append(OrderStatusChanged(
            order_id=canonical_id(Channel.DOUYIN, order), status=status,
            at=_event_time(message) or now, source=Channel.DOUYIN.value, reason=message.tag,
        ))
    if message.tag not in STATUS_ONLY_TAGS:
        fetch.append(order)


def _event_time(message: Message) -> datetime | None:
    """When the message says its event happened; None if it carries no usable time."""
    for key in (TIME_FIELDS.get(message.tag), "update_time", "apply_time", "create_time"):
        value = message.data.get(key) if key else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return datetime.fromtimestamp(value, SHANGHAI)
    return None


def _check_age(messages: list[Message], secrets: PushSecrets, now: datetime) -> None:
    times = [t for t in map(_event_time, messages) if t is not None]
    if not times:
        return  # nothing to judge by (the setup test, tag 110): dedup on msg_id still holds
    try:
        limit = float(secrets.options.get("max_age_s", MAX_AGE_S))
    except ValueError as e:
        raise ConfigurationError(f"Douyin push option max_age_s must be seconds: {e}") from e
    newest = max(times)
    if (now - newest).total_seconds() > limit:
        raise Unauthorized(f"Douyin push is stale: newest event at {newest.isoformat()}")


def _shop(messages: list[Message]) -> str:
    shops = {_id(m.data["shop_id"], f"{m.path}.data.shop_id", digits=True)
             for m in messages if "shop_id" in m.data}
    if len(shops) > 1:
        # Delivery names one shop; a batch spanning shops cannot be recorded faithfully.
        raise InvalidInput(f"one push carries several shops' messages: {', '.join(sorted(shops))}")
    return shops.pop() if shops else ""


def _id(value: Any, path: str, *, digits: bool) -> str:
    """A positive integer or a non-empty string (of digits if `digits`) as text, exactly."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value and (not digits or (value.isascii() and value.isdigit())):
        return value
    kind = "an integer id" if digits else "an id"
    raise InvalidInput(f"expected {kind}, got {value!r}", path=path)
