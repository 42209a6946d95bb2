"""Pinduoduo adapter pieces ingest needs before mapping: unwrapping documents, reading the id.

The network side (the signed router client, the message WebSocket) lives in `ingest.pdd_api`
and is re-exported here, where the poller looks for a channel's `Client` and `Messages`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.files import Document, read_documents
from ingest.pdd_api import Client, Messages, frame_delivery, message_path, sign
from ingest.wrappers import order_array, order_object
from schemas.errors import InvalidInput

__all__ = [
    "Client", "Messages", "frame_delivery", "message_path", "native_id", "read", "sign", "unwrap",
]

EXPECTED = (
    "a PDD order object (with an 'order_sn'), {'order_info_get_response': {'order_info': {...}}}"
    " or {'order_list_get_response': {'order_list': [...]}}"
)
ORDER_SN = re.compile(r"[0-9]{6}-[0-9]{1,20}")
SINGLE = ("order_info_get_response", "order_info")
LISTS = {
    "order_list_get_response": "order_list",
    "order_sn_increment_get_response": "order_sn_list",
}
ERROR = "error_response"


def read(path: Path) -> Iterator[Document]:
    """PDD API responses and exports are JSON: an object, an array or JSON lines."""
    return read_documents(path)


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    """The orders in a bare order or a pdd.order.* response; an error response is InvalidInput."""
    if not isinstance(document, Mapping):
        raise InvalidInput(f"expected {EXPECTED}, got {type(document).__name__}")
    _raise_error(document, "")
    if "order_sn" in document:
        return [document]
    wrapper, key = SINGLE
    if wrapper in document:
        return [_order(_body(document, wrapper).get(key), f"{wrapper}.{key}")]
    for wrapper, key in LISTS.items():
        if wrapper in document:
            return order_array(_body(document, wrapper).get(key), f"{wrapper}.{key}", _order)
    keys = ", ".join(sorted(map(str, document))[:5]) or "none"
    raise InvalidInput(f"expected {EXPECTED}, got an object with keys {keys}")


def _body(document: Mapping[str, Any], wrapper: str) -> Mapping[str, Any]:
    body = document[wrapper]
    if not isinstance(body, Mapping):
        raise InvalidInput(f"expected an object, got {type(body).__name__}", path=wrapper)
    _raise_error(body, wrapper)  # some gateways nest the error inside the named response
    return body


def _raise_error(body: Mapping[str, Any], path: str) -> None:
    if ERROR not in body:
        return
    where = f"{path}.{ERROR}" if path else ERROR
    error = body[ERROR]
    if not isinstance(error, Mapping):
        raise InvalidInput(f"PDD API error: {error!r}", path=where)
    raise InvalidInput(_error_text(error), path=where)


def _error_text(error: Mapping[str, Any]) -> str:
    text = f"PDD API error {error.get('error_code')}: {error.get('error_msg') or 'no message'}"
    sub_code, sub_msg = error.get("sub_code"), error.get("sub_msg")
    if sub_code or sub_msg:
        text += f" ({sub_code}: {sub_msg})" if sub_code else f" ({sub_msg})"
    request_id = error.get("request_id")
    return f"{text} [request_id {request_id}]" if request_id else text


def _order(value: Any, path: str) -> Mapping[str, Any]:
    return order_object(value, path, label="a PDD order object", id_key="order_sn")


def native_id(payload: Mapping[str, Any]) -> str:
    """The order's `order_sn` exactly as sent: `YYMMDD-` and digits, always a string."""
    value = payload.get("order_sn")
    if isinstance(value, str) and ORDER_SN.fullmatch(value):
        return value
    raise InvalidInput(
        f"expected an order_sn like 251215-481803633911509, got {value!r}", path="order_sn"
    )
