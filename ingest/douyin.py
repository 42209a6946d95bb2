"""Douyin shop (抖店) adapter pieces ingest needs before mapping: unwrapping, reading the id."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.files import Document, read_documents
from ingest.wrappers import order_array, order_object
from schemas.errors import InvalidInput

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
        raise InvalidInput(_error_text(document), path="code")
    data = document.get("data")
    if not isinstance(data, Mapping):
        raise InvalidInput(f"expected an object, got {type(data).__name__}", path="data")
    if DETAIL in data:
        return [_order(data[DETAIL], f"data.{DETAIL}")]
    if LIST in data:
        return order_array(data[LIST], f"data.{LIST}", _order)
    raise InvalidInput(f"expected data.{DETAIL} or data.{LIST}", path="data")


def _error_text(document: Mapping[str, Any]) -> str:
    text = f"Douyin API error {document.get('code')}: {document.get('msg') or 'no message'}"
    sub_code, sub_msg = document.get("sub_code"), document.get("sub_msg")
    if sub_code or sub_msg:
        text += f" ({sub_code}: {sub_msg})" if sub_code else f" ({sub_msg})"
    log_id = document.get("log_id")
    return f"{text} [log_id {log_id}]" if log_id else text


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
