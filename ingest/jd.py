"""JD POP adapter pieces ingest needs before mapping: unwrapping JOS bodies, the orderId."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.files import Document, read_documents
from ingest.wrappers import order_array, order_object
from schemas.errors import InvalidInput

EXPECTED = (
    "a JD order (with 'orderId'), "
    "{'jingdong_pop_order_get_responce': {'orderDetailInfo': {'orderInfo': {...}}}} or "
    "{'jingdong_pop_order_search_responce': {'searchorderinfo_result': {'orderInfoList': [...]}}}"
)
# JOS really spells its wrappers "responce"; the correct spelling is accepted as well.
GET = ("jingdong_pop_order_get_responce", "jingdong_pop_order_get_response")
SEARCH = ("jingdong_pop_order_search_responce", "jingdong_pop_order_search_response")


def read(path: Path) -> Iterator[Document]:
    """JOS responses and exports are JSON: an object, an array or JSON lines."""
    return read_documents(path)


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    """The orders in a bare order or a JOS get/search response body.

    `{"error_response": {...}}` and a failed `apiResult` are InvalidInput carrying JD's code.
    """
    if not isinstance(document, Mapping):
        raise InvalidInput(f"expected {EXPECTED}, got {type(document).__name__}")
    if "error_response" in document:
        raise _jos_error(document["error_response"])
    if "orderId" in document:
        return [document]
    for key in GET:
        if key in document:
            path = f"{key}.orderDetailInfo"
            detail = _result(_object(document[key], key).get("orderDetailInfo"), path)
            return [_order(detail.get("orderInfo"), f"{path}.orderInfo")]
    for key in SEARCH:
        if key in document:
            path = f"{key}.searchorderinfo_result"
            result = _result(_object(document[key], key).get("searchorderinfo_result"), path)
            return _orders(result.get("orderInfoList"), f"{path}.orderInfoList")
    keys = ", ".join(sorted(map(str, document))[:5]) or "none"
    raise InvalidInput(f"expected {EXPECTED}, got an object with keys {keys}")


def _jos_error(value: Any) -> InvalidInput:
    error = value if isinstance(value, Mapping) else {}
    text = " / ".join(str(error[k]) for k in ("zh_desc", "en_desc") if error.get(k))
    return InvalidInput(f"JOS error {error.get('code')}: {text}", path="error_response")


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"expected an object, got {type(value).__name__}", path=path)
    return value


def _result(value: Any, path: str) -> Mapping[str, Any]:
    """A result object whose `apiResult` did not report a failure."""
    result = _object(value, path)
    api = result.get("apiResult")
    if isinstance(api, Mapping) and api.get("success") is False:
        codes = " ".join(str(api[k]) for k in ("numberCode", "englishErrCode") if api.get(k))
        raise InvalidInput(
            f"JOS apiResult failed {codes}: {api.get('chineseErrCode')}", path=f"{path}.apiResult"
        )
    return result


def _orders(value: Any, path: str) -> list[Mapping[str, Any]]:
    if value is None:  # JOS leaves the list out when the window holds no order
        return []
    return order_array(value, path, _order)


def _order(value: Any, path: str) -> Mapping[str, Any]:
    return order_object(value, path, label="a JD order object", id_key="orderId")


def native_id(payload: Mapping[str, Any]) -> str:
    """The orderId as an exact digit string (JD sends a string; an integer is accepted)."""
    value = payload.get("orderId")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    raise InvalidInput(f"expected a positive integer order id, got {value!r}", path="orderId")
