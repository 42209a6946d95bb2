"""Taobao / Tmall adapter pieces ingest needs before mapping: unwrapping TOP bodies, the tid.

The network pieces (`Client`, `Messages`, `sign`, `tmc_delivery`) live in `ingest.taobao_api`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.files import Document, read_documents
from ingest.taobao_api import Client as Client
from ingest.taobao_api import Messages as Messages
from ingest.taobao_api import sign as sign
from ingest.taobao_api import tmc_delivery as tmc_delivery
from schemas.errors import InvalidInput

EXPECTED = (
    "a Taobao trade (with 'tid'), {'trade_fullinfo_get_response': {'trade': {...}}}, "
    "{'trades_sold_get_response': {'trades': {'trade': [...]}}} or a TMC message"
)
SINGLE = "trade_fullinfo_get_response"
LIST = "trades_sold_get_response"
ID_KEYS = ("tid_str", "tid")


def read(path: Path) -> Iterator[Document]:
    """TOP responses and exports are JSON: an object, an array or JSON lines."""
    return read_documents(path)


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    """The trades in a bare trade, a TOP response body or a TMC message carrying a full trade.

    `{"error_response": {...}}` is InvalidInput carrying TOP's code and message.
    """
    if not isinstance(document, Mapping):
        raise InvalidInput(f"expected {EXPECTED}, got {type(document).__name__}")
    if "error_response" in document:
        raise _top_error(document["error_response"])
    if any(key in document for key in ID_KEYS):
        return [document]
    if SINGLE in document:
        return [_trade(_body(document, SINGLE).get("trade"), f"{SINGLE}.trade")]
    if LIST in document:
        return _trades(_body(document, LIST).get("trades"), f"{LIST}.trades")
    if "Topic" in document and "Content" in document:
        return [_tmc_trade(document)]
    keys = ", ".join(sorted(map(str, document))[:5]) or "none"
    raise InvalidInput(f"expected {EXPECTED}, got an object with keys {keys}")


def _top_error(value: Any) -> InvalidInput:
    error = value if isinstance(value, Mapping) else {}
    detail = ": ".join(str(error[k]) for k in ("sub_code", "sub_msg") if error.get(k))
    message = f"TOP error {error.get('code')}: {error.get('msg')}"
    return InvalidInput(f"{message} ({detail})" if detail else message, path="error_response")


def _body(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    body = document[key]
    if not isinstance(body, Mapping):
        raise InvalidInput(f"expected an object, got {type(body).__name__}", path=key)
    return body


def _trades(value: Any, path: str) -> list[Mapping[str, Any]]:
    if value is None:  # TOP leaves `trades` out when the window holds no trade
        return []
    trades = value.get("trade") if isinstance(value, Mapping) else None
    if not isinstance(trades, list):
        raise InvalidInput("expected {'trade': [...]}", path=path)
    return [_trade(item, f"{path}.trade[{i}]") for i, item in enumerate(trades)]


def _trade(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not any(key in value for key in ID_KEYS):
        raise InvalidInput("expected a Taobao trade object with a 'tid'", path=path)
    return value


def _tmc_trade(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """The trade in a TMC push whose Content is a whole trade.

    Trade topics (TradeCreate, TradeBuyerPay, ...) only notify: tid, status, payment. Such a
    message is refused with what to do instead, since mapping it would invent an order.
    """
    content = message["Content"]
    if not isinstance(content, str):
        raise InvalidInput("expected a JSON string", path="Content")
    try:
        body = json.loads(content, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise InvalidInput(f"not JSON: {e}", path="Content") from e
    if isinstance(body, Mapping) and "orders" in body:
        return _trade(body, "Content")
    tid = body.get("tid") if isinstance(body, Mapping) else None
    raise InvalidInput(
        f"TMC {message['Topic']} only notifies trade {tid}; import its "
        "taobao.trade.fullinfo.get response instead",
        path="Content",
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def native_id(payload: Mapping[str, Any]) -> str:
    """The trade id as an exact digit string: tid_str when sent, else tid (up to 19 digits)."""
    key = "tid_str" if payload.get("tid_str") is not None else "tid"
    value = payload.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    raise InvalidInput(f"expected a positive integer trade id, got {value!r}", path=key)
