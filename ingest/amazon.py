"""Amazon SP-API Orders v0 adapter: unwrapping saved responses, reading the id, the pull client.

Orders carry no lines: whoever fetches them (the pull `Client` below, or a merchant's saved
responses) must attach each order's getOrderItems `payload.OrderItems` to the order object as
`OrderItems`. Amazon has no push orderhub can receive: SP-API notifications travel through Amazon
SQS or EventBridge, which orderhub does not consume, so Amazon shops are only polled.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from ingest.files import Document, read_documents
from ingest.pull import ChannelError, Clock, Page, RateLimiter, ShopConfig, Throttled, Window
from ingest.wrappers import order_array, order_object
from schemas.errors import ConfigurationError, InvalidInput, TransientError

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


# -- pull client ---------------------------------------------------------------------------------

# SP-API endpoints are regional (-na North America, -eu Europe incl. India and the Middle East,
# -fe Far East: Japan, Singapore, Australia): each shop sets the one of its seller's region as the
# option `base_url`. The default is the Far East endpoint.
PRODUCTION_URL = "https://sellingpartnerapi-fe.amazon.com"
LWA_URL = "https://api.amazon.com/auth/o2/token"
# Default usage plans (requests per second, burst) from the Orders v0 reference. Amazon raises
# them for some sellers; such a shop sets the options orders_rate / order_rate / items_rate.
GET_ORDERS = (0.0167, 20)
GET_ORDER = (0.5, 30)
GET_ORDER_ITEMS = (0.5, 30)
PAGE_SIZE = 100  # getOrders' MaxResultsPerPage ceiling
MARKETPLACE_ID = re.compile(r"[A-Z0-9]{8,20}")
# LWA access tokens live an hour; one is replaced this long before it would expire.
TOKEN_MARGIN = timedelta(minutes=1)
USER_AGENT = "orderhub/0.1 (Language=Python/3.11)"
ITEMS = "OrderItems"
ITEMS_REMEMBERED = 2000


class AccessTokens:
    """Login with Amazon access tokens for one shop, reused until shortly before they expire.

    SP-API no longer needs AWS SigV4 signing (since 2 October 2023): the LWA access token in the
    `x-amz-access-token` header is the whole authentication.
    """

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.shop = shop
        self.session = session
        self.clock = clock
        self.url = shop.option("lwa_url", LWA_URL)
        self.token: str | None = None
        self.expires_at = datetime.min.replace(tzinfo=UTC)
        self.lock = asyncio.Lock()

    async def get(self) -> str:
        async with self.lock:
            if self.token is None or self.clock() >= self.expires_at - TOKEN_MARGIN:
                self.token, self.expires_at = await self._grant()
            return self.token

    def discard(self, token: str) -> None:
        """Forget a token SP-API refused (expired early, revoked) so `get` asks for a new one."""
        if self.token == token:
            self.token = None

    async def _grant(self) -> tuple[str, datetime]:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self.shop.secret("refresh_token"),
            "client_id": self.shop.secret("client_id"),
            "client_secret": self.shop.secret("client_secret"),
        }
        asked_at = self.clock()
        status, headers, body = await _send(self.session, "POST", self.url, "LWA token", data=form)
        if status != 200:
            raise _lwa_refusal(status, headers, body)
        answer = _json(body, "LWA token")
        token, lifetime = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int):
            raise TransientError("LWA token: the answer carries no access token")
        return token, asked_at + timedelta(seconds=lifetime)


class Client:
    """Pulls one seller's orders from SP-API Orders v0, each with its order items attached.

    `shop` carries the LWA credentials `client_id`, `client_secret` and `refresh_token` and the
    options `marketplace_ids` (required, comma separated), `base_url` (the seller's regional
    endpoint), `lwa_url`, and `orders_rate` / `order_rate` / `items_rate` (requests per second
    of getOrders / getOrder / getOrderItems, for a seller whose quota Amazon raised). `session`
    is the poll process's HTTP session; `clock` tells the time for token expiry.
    """

    channel: ClassVar[str] = "amazon"
    # Amazon sets no limit on a window's width. A day bounds what a crash re-reads (the cursor
    # moves at window ends) and keeps each window's NextToken chain short.
    max_window: ClassVar[timedelta] = timedelta(days=1)
    # LastUpdatedBefore must be at least 2 minutes before Amazon's clock, else the request is
    # refused as InvalidInput (which stops the shop). The extra minute absorbs clock skew and
    # Amazon's own delay (most updates show in getOrders two minutes after they happen).
    end_lag: ClassVar[timedelta] = timedelta(minutes=3)

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        for name in ("client_id", "client_secret", "refresh_token"):
            shop.secret(name)  # a missing credential is a ConfigurationError now, not at 3 a.m.
        self.session = session
        self.base_url = shop.option("base_url", PRODUCTION_URL).rstrip("/")
        self.marketplaces = _marketplace_ids(shop)
        self.tokens = AccessTokens(shop, session, clock)
        self.orders_quota = _quota(shop, "orders_rate", GET_ORDERS)
        self.order_quota = _quota(shop, "order_rate", GET_ORDER)
        self.items_quota = _quota(shop, "items_rate", GET_ORDER_ITEMS)
        # Items of orders already fetched, by (id, LastUpdateDate): a page retried after a
        # throttle does not spend the scarce getOrderItems quota on the same orders again.
        self.items_seen: dict[tuple[str, str], list[Any]] = {}

    async def fetch(self, window: Window, page: str | None) -> Page:
        """One getOrders page of orders last updated in the window, with their items."""
        query = {"MarketplaceIds": self.marketplaces}
        if page is None:
            query |= {
                "LastUpdatedAfter": _iso(window.start),
                "LastUpdatedBefore": _iso(window.end),
                "MaxResultsPerPage": str(PAGE_SIZE),
            }
        else:
            query["NextToken"] = page  # Amazon ignores every other criterion with it
        await self.orders_quota.acquire()
        payload = _payload(await self._get("/orders/v0/orders", query, "getOrders"), "getOrders")
        orders = payload.get("Orders")
        if not isinstance(orders, list):
            raise InvalidInput("getOrders answered without an Orders array", path="payload.Orders")
        return Page([await self._with_items(order) for order in orders], _next_token(payload))

    async def fetch_order(self, native_id: str) -> Mapping[str, Any] | None:
        """getOrder and its items; None when Amazon answers 404 or an empty payload."""
        path = f"/orders/v0/orders/{_order_id(native_id)}"
        await self.order_quota.acquire()
        body = await self._get(path, {}, "getOrder", missing_ok=True)
        if body is None:
            return None
        order = _payload(body, "getOrder")
        # Amazon documents 404 for an unknown id but has been seen answering 200 {"payload": {}}
        # (amzn/selling-partner-api-models#2939).
        return await self._with_items(order) if order else None

    async def _with_items(self, order: Any) -> Mapping[str, Any]:
        if not isinstance(order, Mapping):
            raise InvalidInput(f"expected an Amazon order object, got {type(order).__name__}")
        order_id = order.get("AmazonOrderId")
        if not isinstance(order_id, str) or not ORDER_ID.fullmatch(order_id):
            return order  # its items cannot be asked for; ingest dead-letters it with the reason
        key = (order_id, str(order.get("LastUpdateDate")))
        items = self.items_seen.get(key)
        if items is None:
            items = await self._items(order_id)
            if len(self.items_seen) >= ITEMS_REMEMBERED:
                self.items_seen.clear()
            self.items_seen[key] = items
        return {**order, ITEMS: items}

    async def _items(self, order_id: str) -> list[Any]:
        """Every getOrderItems page of one order."""
        items: list[Any] = []
        query: dict[str, str] = {}
        while True:
            await self.items_quota.acquire()
            body = await self._get(
                f"/orders/v0/orders/{order_id}/orderItems", query, "getOrderItems"
            )
            payload = _payload(body, "getOrderItems")
            page = payload.get(ITEMS)
            if not isinstance(page, list):
                raise InvalidInput(
                    f"getOrderItems of {order_id} answered without an OrderItems array",
                    path="payload.OrderItems",
                )
            items.extend(page)
            token = _next_token(payload)
            if token is None:
                return items
            query = {"NextToken": token}

    async def _get(
        self, path: str, query: Mapping[str, str], what: str, missing_ok: bool = False
    ) -> Any:
        """The JSON answer of one SP-API GET; a refused token is replaced once."""
        token = await self.tokens.get()
        status, headers, body = await self._send(path, query, token, what)
        if status == 403 and _sp_error(body)[0] == "Unauthorized":
            self.tokens.discard(token)
            status, headers, body = await self._send(path, query, await self.tokens.get(), what)
        if status == 404 and missing_ok:
            return None
        if status != 200:
            raise _refusal(status, headers, body, what)
        return _json(body, what)

    async def _send(
        self, path: str, query: Mapping[str, str], token: str, what: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = {
            "x-amz-access-token": token,
            "user-agent": USER_AGENT,
            "accept": "application/json",
        }
        return await _send(
            self.session, "GET", self.base_url + path, what, params=query, headers=headers
        )


async def _send(
    session: aiohttp.ClientSession, method: str, url: str, what: str, **kwargs: Any
) -> tuple[int, Mapping[str, str], bytes]:
    try:
        async with session.request(method, url, **kwargs) as response:
            return response.status, response.headers, await response.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise TransientError(f"{what}: {type(e).__name__}: {e}") from e


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as e:
        raise TransientError(f"{what}: the answer is not JSON: {body[:200]!r}") from e


def _payload(body: Any, what: str) -> Mapping[str, Any]:
    payload = body.get("payload") if isinstance(body, Mapping) else None
    if not isinstance(payload, Mapping):
        raise InvalidInput(f"{what} answered without a payload object", path="payload")
    return payload


def _next_token(payload: Mapping[str, Any]) -> str | None:
    token = payload.get("NextToken")
    return token if isinstance(token, str) and token else None


def _sp_error(body: bytes) -> tuple[str | None, str]:
    """The code and text of SP-API's `{"errors": [{"code", "message", "details"}]}`."""
    try:
        errors = json.loads(body).get("errors")
        first = errors[0]
        code, message, details = first.get("code"), first.get("message"), first.get("details")
    except (ValueError, AttributeError, TypeError, IndexError, KeyError):
        return None, repr(body[:200])
    text = f"{message} ({details})" if details else str(message)
    return (code if isinstance(code, str) else None), text


def _refusal(status: int, headers: Mapping[str, str], body: bytes, what: str) -> Exception:
    code, text = _sp_error(body)
    if status == 429:
        return Throttled(f"{what}: {code or 'HTTP 429'}: {text}", _retry_after(headers))
    if status >= 500:
        return TransientError(f"{what}: HTTP {status} {code or ''}: {text}")
    return ChannelError(f"{what}: HTTP {status}: {text}", code=code or str(status))


def _lwa_refusal(status: int, headers: Mapping[str, str], body: bytes) -> Exception:
    """LWA answers OAuth errors: `{"error": "invalid_client", "error_description": ...}`."""
    try:
        answer = json.loads(body)
        code, text = str(answer["error"]), str(answer.get("error_description", ""))
    except (ValueError, TypeError, KeyError):
        code, text = str(status), repr(body[:200])
    if status == 429:
        return Throttled(f"LWA token: {code}: {text}", _retry_after(headers))
    if status >= 500:
        return TransientError(f"LWA token: HTTP {status}: {text}")
    return ChannelError(
        f"LWA token: Login with Amazon refused the shop's client id, secret or "
        f"refresh token: {text}",
        code=code,
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After when sent, else the wait for one request at the operation's rate: SP-API's
    429 usually carries only `x-amzn-RateLimit-Limit`, in requests per second."""
    try:
        if headers.get("Retry-After"):
            return float(headers["Retry-After"])
        rate = headers.get("x-amzn-RateLimit-Limit")
        return 1 / float(rate) if rate else None
    except (ValueError, ZeroDivisionError):
        return None


def _marketplace_ids(shop: ShopConfig) -> str:
    ids = [part.strip() for part in shop.option("marketplace_ids").split(",") if part.strip()]
    if not ids or not all(MARKETPLACE_ID.fullmatch(i) for i in ids):
        raise ConfigurationError(
            f"shop amazon/{shop.shop}: option marketplace_ids must list Amazon marketplace ids "
            "separated by commas, e.g. A1VC38T7YXB528,A39IBJ37TRP1C6"
        )
    return ",".join(ids)


def _quota(shop: ShopConfig, option: str, default: tuple[float, int]) -> RateLimiter:
    rate, burst = default
    try:
        rate = float(shop.option(option, str(rate)))
    except ValueError:
        rate = 0
    if not rate > 0:
        raise ConfigurationError(
            f"shop amazon/{shop.shop}: option {option} must be a positive "
            "number of requests per second"
        )
    return RateLimiter(rate, burst)


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC, whole seconds: Amazon refuses other offsets in its date filters."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _order_id(native_id: str) -> str:
    """The id checked before it goes into a URL path."""
    if not ORDER_ID.fullmatch(native_id):
        raise InvalidInput(
            f"expected an Amazon order id like 902-3159896-1390916, got {native_id!r}"
        )
    return native_id
