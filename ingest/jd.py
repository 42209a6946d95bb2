"""JD POP adapter: unwrapping JOS bodies, the orderId, and the JOS pull client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from ingest.files import Document, read_documents
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
from ingest.wrappers import order_array, order_object
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput, OrderhubError, TransientError

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


# --- JOS pull client (api.jd.com/routerjson) ---------------------------------------------------

API_URL = "https://api.jd.com/routerjson"
SEARCH_METHOD = "jingdong.pop.order.search"
GET_METHOD = "jingdong.pop.order.get"
API_VERSION = "2.0"
PAGE_SIZE = 100  # order.search: "每页的条数（最大page_size 100条）"
BY_MODIFIED = 0  # dateType: 0 (the default) = modified time (status, waybill), 1 = creation time
# order.search requires order_state; these are all the states it documents.
SEARCH_STATES = (
    "WAIT_SELLER_STOCK_OUT", "WAIT_SELLER_DELIVERY", "WAIT_GOODS_RECEIVE_CONFIRM", "PAUSE",
    "FINISHED_L", "TRADE_CANCELED", "LOCKED", "POP_ORDER_PAUSE",
)
# order.search/order.get return only the fields asked for (an empty list is refused).
OPTIONAL_FIELDS = (
    "orderId", "venderId", "orderType", "payType", "orderState", "orderStateRemark",
    "orderStartTime", "paymentConfirmTime", "orderEndTime", "modified", "outBoundDate",
    "orderTotalPrice", "orderSellerPrice", "orderPayment", "freightPrice", "sellerDiscount",
    "balanceUsed", "orderRemark", "venderRemark", "consigneeInfo", "itemInfoList",
    "couponDetailList", "waybill", "logisticsId", "parentOrderId", "idSopShipmenttype",
)
# JOS gateway codes: 2 "App Call Limited"; 1 service unavailable, 43 system error, 65-67 backend
# timeout / unavailable / unknown failure, 69 failed to get data, 78 HTTP call failure.
THROTTLED_CODES = frozenset({"2"})
TRANSIENT_CODES = frozenset({"1", "43", "65", "66", "67", "69", "78"})
# A failed apiResult has no published code list; these words mark a busy backend (assumption).
BUSY_WORDS = ("系统繁忙", "系统异常", "超时", "busy", "timeout", "system error")
RATE_PER_S = 10.0  # no published per-app quota for order.search; 10/s as relays document
TIMEOUT = aiohttp.ClientTimeout(total=30)


def sign(params: Mapping[str, str], secret: str) -> str:
    """The JOS `sign`: MD5(secret + k1v1k2v2… over the keys sorted, `sign` left out + secret)."""
    text = "".join(f"{key}{params[key]}" for key in sorted(params) if key != "sign")
    digest = hashlib.md5(f"{secret}{text}{secret}".encode(), usedforsecurity=False)
    return digest.hexdigest().upper()


def beijing(moment: datetime) -> str:
    """An aware time as JOS writes times: naive Beijing `yyyy-MM-dd HH:mm:ss`."""
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class Client:
    """JD POP pull client: `jingdong.pop.order.search` by modified time, `.get` by orderId.

    `shop`: credentials `app_key`, `app_secret`, `access_token`; options `base_url` (the router
    endpoint) and `rate_per_s`. `session`: the caller's aiohttp session. `clock`: stamps each
    signed request (JOS refuses a timestamp more than 6 minutes off).
    """

    channel: ClassVar[str] = "jd"
    # "开始时间和结束时间，不得相差超过1个月": 28 days fit in every calendar month.
    max_window: ClassVar[timedelta] = timedelta(days=28)
    end_lag: ClassVar[timedelta] = timedelta(0)

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.shop = shop
        self.session = session
        self.clock = clock
        self.url = shop.option("base_url", API_URL)
        rate = float(shop.option("rate_per_s", str(RATE_PER_S)))
        self.limiter = RateLimiter(rate, max(1, int(rate)))

    async def fetch(self, window: Window, page: str | None) -> Page:
        """One page of orders modified in the window; the token is the next page number."""
        number = int(page) if page else 1
        body = await self.call(SEARCH_METHOD, {
            # JOS compares whole seconds: round the end up so its last second is not lost.
            "start_date": beijing(window.start),
            "end_date": beijing(window.end + timedelta(microseconds=999_999)),
            "order_state": ",".join(SEARCH_STATES),
            "optional_fields": ",".join(OPTIONAL_FIELDS),
            "page": str(number),
            "page_size": str(PAGE_SIZE),
            "dateType": BY_MODIFIED,
        })
        result = _checked(body, SEARCH, "searchorderinfo_result")
        orders = unwrap(body)
        total = _count(result.get("orderTotal"))
        more = number * PAGE_SIZE < total if total is not None else len(orders) == PAGE_SIZE
        return Page(orders, str(number + 1) if more else None)

    async def fetch_order(self, native_id: str) -> Mapping[str, Any] | None:
        """The order in full, None when JOS has no such order (or the id is not an orderId)."""
        if not (native_id.isascii() and native_id.isdigit()):
            return None
        body = await self.call(GET_METHOD, {
            "order_id": int(native_id), "optional_fields": ",".join(OPTIONAL_FIELDS)})
        detail = _checked(body, GET, "orderDetailInfo")
        if detail.get("orderInfo") is None:  # assumption: an unknown id has no orderInfo
            return None
        return unwrap(body)[0]

    async def call(self, method: str, business: Mapping[str, Any]) -> Any:
        """One signed router call (form POST, so no credential ends up in a URL or log)."""
        params = {
            "method": method,
            "app_key": self.shop.secret("app_key"),
            "access_token": self.shop.secret("access_token"),
            "timestamp": beijing(self.clock()),
            "v": API_VERSION,
            "360buy_param_json": json.dumps(business, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = sign(params, self.shop.secret("app_secret"))
        await self.limiter.acquire()
        try:
            async with self.session.post(self.url, data=params, timeout=TIMEOUT) as response:
                return await read_json(response, method)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"{method}: {type(e).__name__}: {e}") from e


def _checked(body: Any, keys: tuple[str, ...], result_key: str) -> Mapping[str, Any]:
    """The result object of a JOS answer, or the refusal it carries as our error."""
    if not isinstance(body, Mapping):
        raise InvalidInput(f"expected a JOS answer object, got {type(body).__name__}")
    if "error_response" in body:
        error = body["error_response"]
        raise _refusal(error if isinstance(error, Mapping) else {})
    key = next((k for k in keys if k in body), keys[0])
    wrapper = _object(body.get(key), key)
    if str(wrapper.get("code", "0")) != "0":
        raise _refusal(wrapper)
    result = _object(wrapper.get(result_key), f"{key}.{result_key}")
    api = result.get("apiResult")
    if isinstance(api, Mapping) and api.get("success") is False:
        raise _api_failure(api)
    return result


def _count(value: Any) -> int | None:
    """`orderTotal`, a JSON integer or a digit string; None when JOS left it out."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None


def _refusal(error: Mapping[str, Any]) -> OrderhubError:
    """A JOS gateway error (`code`, `zh_desc`, `en_desc`) as throttling, transient or final."""
    code = str(error.get("code"))
    text = " / ".join(str(error[k]) for k in ("zh_desc", "en_desc") if error.get(k))
    if code in THROTTLED_CODES:
        return Throttled(f"JOS call limit reached (code {code}): {text}")
    if code in TRANSIENT_CODES:
        return TransientError(f"JOS unavailable (code {code}): {text}")
    return ChannelError(f"JOS refused the call: {text}", code=code)


def _api_failure(api: Mapping[str, Any]) -> OrderhubError:
    """A failed `apiResult`: transient when it says the backend is busy, else final."""
    code = str(api.get("numberCode") or api.get("englishErrCode") or "apiResult")
    text = " / ".join(str(api[k]) for k in ("chineseErrCode", "englishErrCode") if api.get(k))
    if any(word in text.lower() for word in BUSY_WORDS):
        return TransientError(f"JOS backend busy (code {code}): {text}")
    return ChannelError(f"JOS apiResult failed: {text}", code=code)
