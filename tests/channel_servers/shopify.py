"""A fake Shopify Admin REST API: access token, orders by updated_at, page_info, the leaky bucket.

It implements the contract from Shopify's documentation and observed answers, independently of
the client: `X-Shopify-Access-Token` (401 `[API] Invalid API key or access token ...`), the orders
list filtered by `status` (default `open`) and `updated_at_min`/`updated_at_max` (both inclusive),
cursor pagination through the `Link` header whose `page_info` carries the filters (any other
parameter beside it is Shopify's 400 `<param> cannot be passed when page_info is present`), one
order by id (404 `Not Found`), and the leaky bucket: `X-Shopify-Shop-Api-Call-Limit: used/size`
on every answer, 429 with `Retry-After: 2.0` when full or when a test sets `throttle_next`.
Shopify puts no limit on a window's width, so neither does this server.
"""

from __future__ import annotations

import base64
import copy
import hmac
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shopify" / "orders_create.json"
BASE_ID = 820982911946154508
API_VERSION = re.compile(r"\d{4}-\d{2}|unstable")
MAX_LIMIT = 250
PAGE_INFO_ONLY = frozenset({"page_info", "limit", "fields"})
BAD_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
THROTTLED = ("Exceeded 2 calls per second for api client. Reduce request rates to resume "
             "uninterrupted service.")


def sample_orders() -> list[dict[str, Any]]:
    """The fixture order and variants of it, six updated on 2026-01-24 UTC and one the day before.

    Variants: no shipping address, an empty and a null SKU, a EUR presentment currency in a USD
    shop, +08:00 offsets, a cancelled (voided) order that `status=open` would hide.
    """
    base: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))

    def variant(n: int, **changes: Any) -> dict[str, Any]:
        order = copy.deepcopy(base)
        order.update(id=BASE_ID + n, name=f"#{1000 + n}", order_number=1000 + n, **changes)
        return order

    empty_sku = variant(2)
    empty_sku["line_items"][0]["sku"] = ""
    empty_sku["line_items"][1]["sku"] = None
    presentment = variant(3, presentment_currency="EUR")
    presentment["total_price_set"]["presentment_money"] = {"amount": "246.17",
                                                           "currency_code": "EUR"}
    return [
        base,  # updated 2026-01-23T23:10:17-05:00, i.e. 04:10:17 UTC on the 24th
        variant(1, shipping_address=None),
        empty_sku,
        presentment,
        variant(4, created_at="2026-01-24T09:00:00+08:00", processed_at="2026-01-24T09:00:00+08:00",
                updated_at="2026-01-24T09:30:00+08:00"),
        variant(5, cancelled_at="2026-01-24T01:00:00-05:00", cancel_reason="customer",
                financial_status="voided", updated_at="2026-01-24T01:00:05-05:00"),
        variant(6, created_at="2026-01-22T10:00:00-05:00", processed_at="2026-01-22T10:00:00-05:00",
                updated_at="2026-01-22T10:00:00-05:00"),
    ]


class FakeShopify:
    """One shop's Admin REST API. Tests set `throttle_next` / `fail_next` to have the next calls
    answered 429 / 503, and read `requests` (path and query of every call) and `throttled`."""

    def __init__(self, orders: Sequence[Mapping[str, Any]], token: str, *, bucket: int = 40,
                 leak_per_s: float = 2.0) -> None:
        self.orders = sorted(orders, key=lambda order: int(order["id"]))
        self.token = token
        self.bucket = bucket
        self.leak_per_s = leak_per_s
        self.used = 0.0
        self.stamp = time.monotonic()
        self.throttle_next = 0
        self.fail_next = 0
        self.throttled = 0
        self.requests: list[tuple[str, dict[str, str]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/admin/api/{version}/orders.json", self.list_orders)
        app.router.add_get("/admin/api/{version}/orders/{order_id}.json", self.get_order)
        return app

    async def list_orders(self, request: web.Request) -> web.Response:
        refused = self._admit(request)
        if refused is not None:
            return refused
        query = request.query
        try:
            limit = _limit(query.get("limit", "50"))
            if "page_info" in query:
                cursor = _cursor_only(query)
            else:
                cursor = {"status": query.get("status", "open"),
                          "min": _time(query, "updated_at_min"),
                          "max": _time(query, "updated_at_max"), "after": None, "before": None}
        except _Refusal as e:
            return self._answer(400, {"errors": e.errors})
        page, previous, following = self._page(cursor, limit)
        links = [f'<{self._link(request, limit, c)}>; rel="{rel}"'
                 for rel, c in (("previous", previous), ("next", following)) if c is not None]
        headers = {"Link": ", ".join(links)} if links else {}
        return self._answer(200, {"orders": page}, headers)

    async def get_order(self, request: web.Request) -> web.Response:
        refused = self._admit(request)
        if refused is not None:
            return refused
        wanted = request.match_info["order_id"]
        for order in self.orders:
            if str(order["id"]) == wanted:
                return self._answer(200, {"order": order})
        return self._answer(404, {"errors": "Not Found"})

    def _admit(self, request: web.Request) -> web.Response | None:
        """Version, token, injected failures and the bucket, in Shopify's order of refusal."""
        self.requests.append((request.path, dict(request.query)))
        if not API_VERSION.fullmatch(request.match_info["version"]):
            return self._answer(404, {"errors": "Not Found"})
        sent = request.headers.get("X-Shopify-Access-Token", "").encode()
        if not hmac.compare_digest(sent, self.token.encode()):
            return self._answer(401, {"errors": BAD_TOKEN})
        if self.fail_next:
            self.fail_next -= 1
            return self._answer(503, {"errors": "Service Unavailable"})
        self._leak()
        if self.throttle_next or self.used + 1 > self.bucket:
            self.throttle_next = max(self.throttle_next - 1, 0)
            self.throttled += 1
            return self._answer(429, {"errors": THROTTLED}, {"Retry-After": "2.0"})
        self.used += 1
        return None

    def _leak(self) -> None:
        now = time.monotonic()
        self.used = max(0.0, self.used - (now - self.stamp) * self.leak_per_s)
        self.stamp = now

    def _page(self, cursor: dict[str, Any], limit: int
              ) -> tuple[list[Mapping[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
        """The page a cursor names, with the cursors of the pages before and after it."""
        selected = [o for o in self.orders if _selected(o, cursor)]
        if cursor["before"] is not None:
            earlier = [o for o in selected if int(o["id"]) < cursor["before"]]
            start = max(len(earlier) - limit, 0)
        elif cursor["after"] is not None:
            start = len([o for o in selected if int(o["id"]) <= cursor["after"]])
        else:
            start = 0
        page = selected[start:start + limit]
        if not page:
            return [], None, None
        previous = dict(cursor, after=None, before=int(page[0]["id"])) if start > 0 else None
        more = start + limit < len(selected)
        following = dict(cursor, after=int(page[-1]["id"]), before=None) if more else None
        return page, previous, following

    def _link(self, request: web.Request, limit: int, cursor: Mapping[str, Any]) -> str:
        token = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
        return f"{request.url.origin()}{request.path}?limit={limit}&page_info={token}"

    def _answer(self, status: int, body: Any, headers: Mapping[str, str] | None = None
                ) -> web.Response:
        limit = f"{math.ceil(self.used)}/{self.bucket}"
        return web.Response(status=status, body=json.dumps(body).encode(),
                            content_type="application/json",
                            headers={"X-Shopify-Shop-Api-Call-Limit": limit, **(headers or {})})


class _Refusal(Exception):
    def __init__(self, param: str, message: str) -> None:
        self.errors = {param: message}
        super().__init__(message)


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise _Refusal("limit", f"limit must be between 1 and {MAX_LIMIT}")  # assumed wording
    return int(value)


def _cursor_only(query: Mapping[str, str]) -> dict[str, Any]:
    extra = sorted(set(query) - PAGE_INFO_ONLY)
    if extra:
        raise _Refusal(extra[0], f"{extra[0]} cannot be passed when page_info is present. See "
                                 "https://shopify.dev/api/usage/pagination-rest for more "
                                 "information.")
    token = query["page_info"]
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise _Refusal("page_info", "Invalid value.") from None  # assumed wording
    if not isinstance(cursor, dict):
        raise _Refusal("page_info", "Invalid value.")
    return cursor


def _time(query: Mapping[str, str], name: str) -> str | None:
    """A filter time, kept as sent; one without an offset is refused (Shopify would read it in
    the shop's own zone: a client sending one has lost the window's zone)."""
    value = query.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _Refusal(name, f"{name} must be an ISO 8601 time with an offset")
    return value


def _selected(order: Mapping[str, Any], cursor: Mapping[str, Any]) -> bool:
    status = cursor["status"]
    cancelled, closed = order.get("cancelled_at") is not None, order.get("closed_at") is not None
    if status == "open" and (cancelled or closed):
        return False
    if (status == "cancelled" and not cancelled) or (status == "closed" and not closed):
        return False
    updated = datetime.fromisoformat(order["updated_at"])
    if cursor["min"] is not None and updated < datetime.fromisoformat(cursor["min"]):
        return False
    return cursor["max"] is None or updated <= datetime.fromisoformat(cursor["max"])
