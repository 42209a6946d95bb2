"""A fake Login with Amazon token endpoint and SP-API Orders v0 that enforce their contracts.

It grants short-lived access tokens only for the right client id, secret and refresh token,
refuses missing, unknown and expired tokens like SP-API (403 Unauthorized), refuses a
LastUpdatedBefore later than two minutes before its clock with SP-API's InvalidInput answer,
requires MarketplaceIds, pages orders and order items with NextTokens (ignoring every other
criterion with one), and answers 429 QuotaExceeded or 503 on demand.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parents[1] / "fixtures" / "amazon"
INVALID = "The input you have submitted is not valid. Please check your input and try again."
DENIED = "Access to requested resource is denied."
# Usage plans SP-API reports in x-amzn-RateLimit-Limit.
RATES = {"getOrders": "0.0167", "getOrder": "0.5", "getOrderItems": "0.5"}
LAG = timedelta(minutes=2)


def fixture_order(name: str) -> dict[str, Any]:
    """A fixture's order: `payload` of a getOrder file, or the first order of `orders_page`."""
    body = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    payload: dict[str, Any] = body["payload"]
    return payload["Orders"][0] if "Orders" in payload else payload


def variant(
    order: Mapping[str, Any], order_id: str, updated: str, **changes: Any
) -> dict[str, Any]:
    """A copy of `order` under another id, last updated at `updated` (placed 30 min before)."""
    copied = copy.deepcopy(dict(order))
    placed = _time(updated) - timedelta(minutes=30)
    copied.update(
        AmazonOrderId=order_id,
        LastUpdateDate=updated,
        PurchaseDate=placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **changes,
    )
    return copied


def cancelled_with_nothing_ordered() -> dict[str, Any]:
    """A Canceled order as Amazon reports it: QuantityOrdered 0, ItemPrice 0, no OrderTotal."""
    order = variant(fixture_order("order_canceled"), "503-5550005-0000005", "2026-03-13T09:00:00Z")
    del order["OrderTotal"]
    item = order["OrderItems"][0]
    item.update(
        QuantityOrdered=0,
        ItemPrice={"CurrencyCode": "JPY", "Amount": "0"},
        ItemTax={"CurrencyCode": "JPY", "Amount": "0"},
    )
    return order


def sample_orders() -> list[dict[str, Any]]:
    """The fixed set the fake serves: five US/DE orders updated on 2026-03-14 (UTC), a JP one
    that day too, and others before and after it."""
    unshipped, shipped = fixture_order("order_unshipped"), fixture_order("order_shipped")
    partial, cancelled = fixture_order("orders_page"), fixture_order("order_canceled")
    return [
        unshipped,  # 2026-03-14T16:36:02Z, US
        fixture_order("order_pending"),  # 2026-03-14T23:58:40Z, US
        variant(unshipped, "112-5550001-0000001", "2026-03-14T03:00:00Z"),
        variant(shipped, "028-5550002-0000002", "2026-03-14T08:00:00Z"),  # DE
        variant(partial, "114-5550003-0000003", "2026-03-14T12:00:00Z"),
        variant(cancelled, "503-5550004-0000004", "2026-03-14T05:00:00Z"),  # JP
        partial,  # 2026-03-15T02:03:19Z
        shipped,  # 2026-03-21T08:15:30Z
        cancelled,  # 2026-03-12T18:02:11Z
        cancelled_with_nothing_ordered(),  # 2026-03-13T09:00:00Z
    ]


@dataclass
class Call:
    """One request the fake answered: operation, query parameters, HTTP status."""

    operation: str
    query: dict[str, str]
    status: int


@dataclass
class FakeAmazon:
    """State and knobs of the fake; `app()` serves it.

    Knobs: `throttle_next[operation]` answers that many next calls 429 (`retry_after` adds a
    Retry-After header); `fail_next[operation]` answers 503; `throttle_items_of` holds order ids
    whose next getOrderItems call is throttled; `unknown_order` is "404" or "empty" (SP-API has
    answered both for an unknown getOrder id).
    """

    orders: list[dict[str, Any]]
    client_id: str = "amzn1.application-oa2-client.0123456789abcdef"
    client_secret: str = "amzn1.oa2-cs.v1.fake-secret-0123456789"
    refresh_token: str = "Atzr|IwEBfake-refresh-token"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    page_size: int = 100
    items_page_size: int = 100
    token_lifetime_s: int = 3600
    throttle_next: dict[str, int] = field(default_factory=dict)
    retry_after: str | None = None
    fail_next: dict[str, int] = field(default_factory=dict)
    throttle_items_of: set[str] = field(default_factory=set)
    unknown_order: str = "404"
    grants: int = 0
    calls: list[Call] = field(default_factory=list)
    tokens: dict[str, datetime] = field(default_factory=dict)
    next_tokens: dict[str, tuple[str, Any, int]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/auth/o2/token", self.grant)
        app.router.add_get("/orders/v0/orders", self.get_orders)
        app.router.add_get("/orders/v0/orders/{order_id}", self.get_order)
        app.router.add_get("/orders/v0/orders/{order_id}/orderItems", self.get_order_items)
        return app

    def expire_tokens(self) -> None:
        """Every access token granted so far expires now (Amazon can end one early)."""
        self.tokens = dict.fromkeys(self.tokens, self.clock())

    def statuses(self, operation: str) -> list[int]:
        return [call.status for call in self.calls if call.operation == operation]

    # -- Login with Amazon -----------------------------------------------------------------------

    async def grant(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth(400, "invalid_request", "The request is missing a required parameter")
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return _oauth(
                400,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server",
            )
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return _oauth(401, "invalid_client", "Client authentication failed")
        if form.get("refresh_token") != self.refresh_token:
            return _oauth(
                400, "invalid_grant", "The request has an invalid grant parameter : refresh_token"
            )
        self.grants += 1
        token = "Atza|" + secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + timedelta(seconds=self.token_lifetime_s)
        return web.json_response(
            {
                "access_token": token,
                "refresh_token": self.refresh_token,
                "token_type": "bearer",
                "expires_in": self.token_lifetime_s,
            }
        )

    # -- Orders v0 -------------------------------------------------------------------------------

    async def get_orders(self, request: web.Request) -> web.Response:
        return self._answer("getOrders", request, lambda: self._orders(request.query))

    async def get_order(self, request: web.Request) -> web.Response:
        return self._answer("getOrder", request, lambda: self._order(request))

    async def get_order_items(self, request: web.Request) -> web.Response:
        return self._answer("getOrderItems", request, lambda: self._items(request))

    def _answer(
        self, operation: str, request: web.Request, work: Callable[[], web.Response]
    ) -> web.Response:
        response = self._refusal(operation, request) or work()
        self.calls.append(Call(operation, dict(request.query), response.status))
        return response

    def _refusal(self, operation: str, request: web.Request) -> web.Response | None:
        token = request.headers.get("x-amz-access-token")
        if not token:
            return _error(
                403, "Unauthorized", DENIED, "Access token is missing in the request header."
            )
        if token not in self.tokens:
            return _error(
                403,
                "Unauthorized",
                DENIED,
                "The access token you provided is revoked, malformed or invalid.",
            )
        if self.clock() >= self.tokens[token]:
            return _error(403, "Unauthorized", DENIED, "The access token you provided has expired.")
        order_id = request.match_info.get("order_id")
        if self.throttle_next.get(operation) or (
            operation == "getOrderItems" and order_id in self.throttle_items_of
        ):
            self.throttle_next[operation] = max(self.throttle_next.get(operation, 0) - 1, 0)
            self.throttle_items_of.discard(order_id or "")
            headers = {"x-amzn-RateLimit-Limit": RATES[operation]}
            if self.retry_after:
                headers["Retry-After"] = self.retry_after
            return _error(
                429,
                "QuotaExceeded",
                "You exceeded your quota for the requested resource.",
                headers=headers,
            )
        if self.fail_next.get(operation):
            self.fail_next[operation] -= 1
            return _error(503, "ServiceUnavailable", "Service is temporarily unavailable.")
        return None

    def _orders(self, query: Mapping[str, str]) -> web.Response:
        marketplaces = query.get("MarketplaceIds")
        if not marketplaces:
            return _error(400, "InvalidInput", INVALID, "MarketplaceIds is required")
        if "NextToken" in query:
            return self._orders_page(query["NextToken"])
        try:
            after = _time(query["LastUpdatedAfter"])
            before = _time(query.get("LastUpdatedBefore") or _text(self.clock() - LAG))
            size = int(query.get("MaxResultsPerPage", "100"))
        except (KeyError, ValueError):
            return _error(400, "InvalidInput", INVALID)
        if before > self.clock() - LAG or after > before or not 1 <= size <= 100:
            return _error(400, "InvalidInput", INVALID)  # SP-API says no more than this
        wanted = set(marketplaces.split(","))
        found = sorted(
            (
                o
                for o in self.orders
                if o["MarketplaceId"] in wanted and after <= _time(o["LastUpdateDate"]) <= before
            ),
            key=lambda o: (o["LastUpdateDate"], o["AmazonOrderId"]),
        )
        ids = [o["AmazonOrderId"] for o in found]
        return self._orders_page(self._token("orders", (ids, _text(before), size), 0))

    def _orders_page(self, token: str) -> web.Response:
        kind, state, offset = self.next_tokens.get(token, ("", None, 0))
        if kind != "orders":
            return _error(400, "InvalidInput", INVALID, "Invalid NextToken")
        ids, before, size = state
        size = min(size, self.page_size)
        chunk = ids[offset : offset + size]
        payload: dict[str, Any] = {
            "Orders": [_without_items(self._find(i)) for i in chunk],
            "LastUpdatedBefore": before,
        }
        if offset + size < len(ids):
            payload["NextToken"] = self._token("orders", state, offset + size)
        return web.json_response({"payload": payload})

    def _order(self, request: web.Request) -> web.Response:
        order = self._find(request.match_info["order_id"])
        if order is None:
            if self.unknown_order == "empty":
                return web.json_response({"payload": {}})
            return _error(404, "NotFound", "The resource specified does not exist.")
        return web.json_response({"payload": _without_items(order)})

    def _items(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        order = self._find(order_id)
        if order is None:
            return _error(404, "NotFound", "The resource specified does not exist.")
        offset = 0
        if "NextToken" in request.query:
            kind, owner, offset = self.next_tokens.get(request.query["NextToken"], ("", None, 0))
            if kind != "items" or owner != order_id:
                return _error(400, "InvalidInput", INVALID, "Invalid NextToken")
        items = order["OrderItems"]
        payload: dict[str, Any] = {
            "OrderItems": items[offset : offset + self.items_page_size],
            "AmazonOrderId": order_id,
        }
        if offset + self.items_page_size < len(items):
            payload["NextToken"] = self._token("items", order_id, offset + self.items_page_size)
        return web.json_response({"payload": payload})

    def _find(self, order_id: str) -> dict[str, Any] | None:
        return next((o for o in self.orders if o["AmazonOrderId"] == order_id), None)

    def _token(self, kind: str, state: Any, offset: int) -> str:
        # Real NextTokens are base64 with '+', '/' and '=': the client must send them escaped.
        token = base64.b64encode(b"\xfb\xff\xbf" + secrets.token_bytes(8)).decode()
        self.next_tokens[token] = (kind, state, offset)
        return token


def _without_items(order: Mapping[str, Any] | None) -> dict[str, Any]:
    assert order is not None
    return {key: value for key, value in order.items() if key != "OrderItems"}


def _time(text: str) -> datetime:
    """SP-API date filters: ISO 8601 in UTC with a Z."""
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC time: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(
    status: int,
    code: str,
    message: str,
    details: str = "",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "details": details}]}
    return web.json_response(body, status=status, headers=headers)


def _oauth(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error_description": description, "error": error}, status=status)
