"""Shopify adapter pieces ingest needs before mapping: unwrapping documents, reading the id."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.files import Document, read_documents
from ingest.wrappers import order_array, order_object
from schemas.errors import InvalidInput

EXPECTED = "a Shopify order object (with an 'id'), {'order': {...}} or {'orders': [...]}"


def read(path: Path) -> Iterator[Document]:
    """Shopify exports and API responses are JSON: an object, an array or JSON lines."""
    return read_documents(path)


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    """The order objects in a bare order, a REST `{"order": ...}` or `{"orders": [...]}` body."""
    if not isinstance(document, Mapping):
        raise InvalidInput(f"expected {EXPECTED}, got {type(document).__name__}")
    if "id" in document:
        return [document]
    if "order" in document:
        return [_order(document["order"], "order")]
    if "orders" in document:
        return order_array(document["orders"], "orders", _order)
    keys = ", ".join(sorted(map(str, document))[:5]) or "none"
    raise InvalidInput(f"expected {EXPECTED}, got an object with keys {keys}")


def _order(value: Any, path: str) -> Mapping[str, Any]:
    return order_object(value, path, label="a Shopify order object", id_key="id")


def native_id(payload: Mapping[str, Any]) -> str:
    """The order's `id` as a string of digits, exactly as sent (ids exceed 2^53)."""
    value = payload.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    raise InvalidInput(f"expected a positive integer order id, got {value!r}", path="id")
