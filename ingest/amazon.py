"""Amazon SP-API Orders v0 adapter pieces ingest needs before mapping: unwrapping, reading the id.

Orders carry no lines: whoever fetched them (the poller, or a merchant's saved responses) must
attach each order's getOrderItems `payload.OrderItems` to the order object as `OrderItems`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.files import Document, read_documents
from ingest.wrappers import order_array, order_object
from schemas.errors import InvalidInput

EXPECTED = (
    "an Amazon order (with 'AmazonOrderId' and its 'OrderItems'), a getOrder response "
    "{'payload': {...}} or a getOrders response {'payload': {'Orders': [...]}}"
)
ORDER_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")


def read(path: Path) -> Iterator[Document]:
    """Saved API responses are JSON: an object, an array or JSON lines."""
    return read_documents(path)


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    """The orders in a bare order, a getOrder or a getOrders response; `errors` is InvalidInput."""
    if not isinstance(document, Mapping):
        raise InvalidInput(f"expected {EXPECTED}, got {type(document).__name__}")
    if document.get("errors"):
        raise InvalidInput(_errors(document["errors"]), path="errors")
    if "AmazonOrderId" in document:
        return [_order(document, "")]
    payload = document.get("payload")
    if isinstance(payload, Mapping) and "Orders" in payload:
        return order_array(payload["Orders"], "payload.Orders", _order)
    if isinstance(payload, Mapping) and "AmazonOrderId" in payload:
        return [_order(payload, "payload")]
    keys = ", ".join(sorted(map(str, payload if isinstance(payload, Mapping) else document))[:5])
    raise InvalidInput(f"expected {EXPECTED}, got an object with keys {keys or 'none'}")


def _errors(errors: Any) -> str:
    listed = errors if isinstance(errors, list) else [errors]
    return "Amazon SP-API error: " + "; ".join(_error(error) for error in listed)


def _error(error: Any) -> str:
    if not isinstance(error, Mapping):
        return repr(error)
    text = f"{error.get('code')}: {error.get('message')}"
    return f"{text} ({error['details']})" if error.get("details") else text


def _order(value: Any, path: str) -> Mapping[str, Any]:
    order = order_object(value, path, label="an Amazon order object", id_key="AmazonOrderId")
    if "OrderItems" in order and "OrderStatus" not in order:
        raise InvalidInput(
            "this is a getOrderItems response: attach its OrderItems to the order "
            "from getOrder instead",
            path=path or None,
        )
    if "OrderItems" not in order:
        where = f"{path}.OrderItems" if path else "OrderItems"
        raise InvalidInput(
            "the order has no lines: attach getOrderItems' payload.OrderItems "
            "to it as 'OrderItems'",
            path=where,
        )
    return order


def native_id(payload: Mapping[str, Any]) -> str:
    """The `AmazonOrderId` (3-7-7, e.g. 902-3159896-1390916) as sent."""
    value = payload.get("AmazonOrderId")
    if isinstance(value, str) and ORDER_ID.fullmatch(value):
        return value
    raise InvalidInput(
        f"expected an Amazon order id like 902-3159896-1390916, got {value!r}", path="AmazonOrderId"
    )
