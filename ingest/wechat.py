"""WeChat Channels shop adapter pieces ingest needs before mapping: unwrapping, reading the id."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.files import Document, read_documents
from ingest.wrappers import order_object
from schemas.errors import InvalidInput

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
