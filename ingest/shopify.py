"""Shopify adapter: unwrapping documents, reading the id, verifying webhooks, pulling orders.

Webhooks (`verify_push`) carry the full REST Order for the orders/* topics; the pull `Client` reads
the Admin REST API's orders by `updated_at` to catch what webhooks missed (Shopify gives up on a
delivery after 8 tries in 4 hours, and drops the subscription if failures go on).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import aiohttp

from ingest.files import Document, read_documents
from ingest.pull import ChannelError, Clock, Page, RateLimiter, ShopConfig, Window, read_json
from ingest.push import MAX_AGE_S, Delivery, PushRequest, PushSecrets, Unauthorized
from ingest.wrappers import order_array, order_object
from schemas.errors import ConfigurationError, InvalidInput, TransientError

log = logging.getLogger(__name__)

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


# -- webhooks ------------------------------------------------------------------------------------

HMAC_HEADER = "x-shopify-hmac-sha256"
# Topics whose body is the full REST Order resource, exactly what `normalize.shopify` maps.
ORDER_TOPICS = frozenset({
    "orders/create", "orders/updated", "orders/paid", "orders/cancelled", "orders/fulfilled",
    "orders/partially_fulfilled",
})
# What the mapper needs. A body without them was trimmed by the subscription's `include_fields`:
# the order is fetched in full instead of producing a payload the mapper must refuse.
MAPPED_FIELDS = ("financial_status", "created_at", "currency", "total_price", "line_items")
# Shopify retries a failed delivery 8 times over 4 hours, every time with the ORIGINAL
# X-Shopify-Triggered-At: refusing those as stale would lose the orders of every hub outage.
# 48 hours is far past that horizon (and the 48 h one before September 2024) and still refuses a
# body captured long ago. The header is not covered by the HMAC, so this is a tripwire against
# careless replays, not proof of freshness: a replayed body is still genuine Shopify data about
# a state the order really had.
MAX_PUSH_AGE_S = 48 * 3600.0
SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,200}")  # a UUID in practice; any visible ASCII token


def signature(body: bytes, secret: str) -> str:
    """X-Shopify-Hmac-Sha256 of a body: base64 of HMAC-SHA256 keyed with the app client secret."""
    return base64.b64encode(_digest(body, secret)).decode("ascii")


def verify_push(request: PushRequest, secrets: PushSecrets, now: datetime) -> Delivery:
    """The delivery of one Shopify webhook, its HMAC checked on the raw body before parsing.

    Unauthorized: no, forged or non-base64 X-Shopify-Hmac-Sha256, or an X-Shopify-Triggered-At
    that is unreadable, older than `max_age_s` (option, default 48 h: see MAX_PUSH_AGE_S) or over
    MAX_AGE_S in the future. A delivery without that header is judged by its signature alone (the
    header is unsigned, so requiring it would stop no forger). InvalidInput: signed, but without
    webhook id or shop domain, or a body that is not the topic's JSON.

    The orders/* topics in ORDER_TOPICS bring the full order (or, when trimmed, its id to fetch);
    orders/edited brings `order_edit.order_id` to fetch. orders/delete (`{"id": ...}`) produces
    nothing: orderhub has no "deleted" status, Shopify lets merchants delete only orders already
    cancelled (reported by orders/cancelled) or archived, and mapping it to cancelled would
    cancel an archived order that was shipped. Other topics are acknowledged and ignored; no
    push yields status changes, since every order topic carries the whole order. Shopify
    expects an empty 200.
    """
    _check_signature(request.headers.get(HMAC_HEADER), request.body, secrets.secret)
    _check_fresh(request.headers.get("x-shopify-triggered-at"), now, _max_age(secrets))
    # X-Shopify-Webhook-Id stays the same on every retry of one delivery (Shopify's "verify
    # deliveries" guide dedups on it); X-Shopify-Event-Id names the event, which every
    # subscription to it shares, so it would merge distinct deliveries.
    delivery_id = f"shopify:{_header(request, 'x-shopify-webhook-id', WEBHOOK_ID)}"
    shop = _header(request, "x-shopify-shop-domain", SHOP_DOMAIN, lower=True)
    topic = request.headers.get("x-shopify-topic", "").strip().lower()
    if topic in ORDER_TOPICS:
        order = _order(_parse(request.body), "")
        if all(key in order for key in MAPPED_FIELDS):
            native_id(order)  # an unusable id refuses the whole body here, with the reason
            return Delivery(delivery_id, shop, orders=[order])
        return Delivery(delivery_id, shop, fetch=[native_id(order)])
    if topic == "orders/edited":
        return Delivery(delivery_id, shop, fetch=[_edited_order(_parse(request.body))])
    log.info("shopify webhook %s from %s: topic %r produces nothing", delivery_id, shop, topic)
    return Delivery(delivery_id, shop)


def _digest(body: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def _check_signature(sent: str | None, body: bytes, secret: str) -> None:
    if not secret:
        raise Unauthorized("no Shopify client secret is configured")  # never verify with ""
    if not sent:
        raise Unauthorized("missing X-Shopify-Hmac-Sha256")
    try:
        claimed = base64.b64decode(sent, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized("X-Shopify-Hmac-Sha256 is not base64") from None
    if not hmac.compare_digest(claimed, _digest(body, secret)):
        raise Unauthorized("X-Shopify-Hmac-Sha256 does not match the body")


def _check_fresh(sent: str | None, now: datetime, max_age_s: float) -> None:
    if sent is None:
        return
    try:
        triggered = datetime.fromisoformat(sent.strip())
    except ValueError:
        triggered = None
    if triggered is None or triggered.tzinfo is None:
        raise Unauthorized(f"X-Shopify-Triggered-At is not an ISO time with offset: {sent[:40]!r}")
    age = (now - triggered).total_seconds()
    if age > max_age_s:
        raise Unauthorized(f"stale delivery: triggered {age:.0f} s ago, over {max_age_s:.0f} s")
    if age < -MAX_AGE_S:
        raise Unauthorized(f"delivery triggered {-age:.0f} s in the future")


def _max_age(secrets: PushSecrets) -> float:
    value = secrets.options.get("max_age_s")
    if value is None:
        return MAX_PUSH_AGE_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:  # also refuses nan
        raise ConfigurationError("shopify webhook option max_age_s must be a positive number of "
                                 f"seconds, got {value!r}")
    return seconds


def _header(request: PushRequest, name: str, form: re.Pattern[str], lower: bool = False) -> str:
    value = request.headers.get(name, "").strip()
    value = value.lower() if lower else value
    if not form.fullmatch(value):
        raise InvalidInput(f"signed, but header {name} is missing or malformed: {value[:60]!r}")
    return value


def _parse(body: bytes) -> Any:
    """The body as JSON, big integers exact."""
    try:
        return json.loads(body)
    except ValueError as e:
        raise InvalidInput(f"the body is not JSON: {e}") from e


def _edited_order(document: Any) -> str:
    """The id of the order an orders/edited body (`{"order_edit": {"order_id": ...}}`) changed."""
    edit = document.get("order_edit") if isinstance(document, Mapping) else None
    order_id = edit.get("order_id") if isinstance(edit, Mapping) else None
    try:
        return native_id({"id": order_id})
    except InvalidInput:
        raise InvalidInput(f"expected an orders/edited body with a positive integer order id, "
                           f"got {order_id!r}", path="order_edit.order_id") from None


# -- pull client ---------------------------------------------------------------------------------

API_VERSION = "2025-01"
PAGE_LIMIT = 250  # the Admin REST API's largest page
# The REST Admin API's leaky bucket per app and shop on standard plans: 40 requests, leaking 2 a
# second (Advanced 4/s; Plus 20/s with a bigger bucket: such a shop sets the options rate/burst).
RATE, BUCKET = 2.0, 40
CALL_LIMIT_HEADER = "X-Shopify-Shop-Api-Call-Limit"
CALL_LIMIT = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')
API_VERSION_FORM = re.compile(r"\d{4}-\d{2}|unstable")
SHOP_NAME = re.compile(r"[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*")
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
USER_AGENT = "orderhub/0.1 (Python aiohttp)"


class CallLimit(RateLimiter):
    """Our token bucket kept in step with Shopify's: X-Shopify-Shop-Api-Call-Limit (`39/40`) says
    how full the app's bucket for the shop is, counting calls our other processes made too."""

    def observe(self, header: str | None) -> None:
        match = CALL_LIMIT.fullmatch(header or "")
        if match:
            free = max(int(match[2]) - int(match[1]), 0)
            self.tokens = min(self.tokens, float(free))
            self.stamp = self.monotonic()

    def drain(self) -> None:
        """Shopify answered 429: its bucket is full whatever ours believed."""
        self.tokens = 0.0
        self.stamp = self.monotonic()


class Client:
    """Pulls one shop's orders from the Admin REST API by `updated_at`, for what webhooks missed.

    `shop` carries the credential `access_token` (an Admin API access token with read_orders)
    and the options `base_url` (default `https://{shop}.myshopify.com`, or `https://{shop}` for a
    shop named by its domain — name Shopify shops by their myshopify.com domain, the one webhooks
    report, so that pushed ids to fetch reach this client), `api_version` (default 2025-01),
    `page_size` (at most 250) and `rate`/`burst` (the app's REST bucket, default 2/s and 40).
    `session` is the poll process's HTTP session; `clock` is unused: requests carry no time.
    Without the read_all_orders scope Shopify only lists the last 60 days of orders.
    """

    channel: ClassVar[str] = "shopify"
    # Shopify accepts any width. A day bounds one window's chain of pages, and what a crash
    # re-reads, since the cursor moves at window ends.
    max_window: ClassVar[timedelta] = timedelta(days=1)
    end_lag: ClassVar[timedelta] = timedelta(0)

    def __init__(self, shop: ShopConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.session = session
        self.headers = {"X-Shopify-Access-Token": shop.secret("access_token"),
                        "Accept": "application/json", "User-Agent": USER_AGENT}
        version = shop.option("api_version", API_VERSION)
        if not API_VERSION_FORM.fullmatch(version):
            raise ConfigurationError(f"shop shopify/{shop.shop}: option api_version must look "
                                     f"like {API_VERSION}, got {version!r}")
        self.api_url = f"{_base_url(shop)}/admin/api/{version}"
        self.page_size = int(_number(shop, "page_size", PAGE_LIMIT, PAGE_LIMIT))
        self.limiter = CallLimit(_number(shop, "rate", RATE), int(_number(shop, "burst", BUCKET)))

    async def fetch(self, window: Window, page: str | None) -> Page:
        """One page of orders whose `updated_at` is in the window (Shopify includes both ends)."""
        query = {"limit": str(self.page_size)}
        if page is None:
            # status defaults to "open": without "any", cancelled and closed orders never come.
            query |= {"status": "any", "updated_at_min": _iso(window.start),
                      "updated_at_max": _iso(window.end)}
        else:
            # The cursor carries the filters; Shopify refuses them beside it (HTTP 400).
            query["page_info"] = page
        answer, headers = await self._get("/orders.json", query, "orders.json")
        orders = answer.get("orders") if isinstance(answer, Mapping) else None
        if not isinstance(orders, list) or not all(isinstance(o, Mapping) for o in orders):
            raise ChannelError("orders.json answered without an array of order objects",
                               code="unexpected_answer")
        return Page(orders, _next_page(headers.get("Link")))

    async def fetch_order(self, native_id: str) -> Mapping[str, Any] | None:
        """The order in full; None when Shopify answers 404 (deleted, or never existed)."""
        if not (native_id.isascii() and native_id.isdigit()):
            return None  # not a Shopify order id, so no Shopify order has it
        what = f"orders/{native_id}.json"
        answer, _ = await self._get(f"/orders/{native_id}.json", {}, what, missing_ok=True)
        if answer is None:
            return None
        order = answer.get("order") if isinstance(answer, Mapping) else None
        if not isinstance(order, Mapping):
            raise ChannelError(f"{what} answered without an order object",
                               code="unexpected_answer")
        return order

    async def _get(self, path: str, query: Mapping[str, str], what: str, missing_ok: bool = False
                   ) -> tuple[Any, Mapping[str, str]]:
        """The JSON answer of one GET and its headers, after waiting for room in the bucket; the
        answer is None for a 404 when `missing_ok`."""
        await self.limiter.acquire()
        try:
            async with self.session.get(self.api_url + path, params=query, headers=self.headers,
                                        allow_redirects=False, timeout=REQUEST_TIMEOUT
                                        ) as response:
                self.limiter.observe(response.headers.get(CALL_LIMIT_HEADER))
                if response.status == 429:
                    self.limiter.drain()
                if response.status == 404 and missing_ok:
                    return None, response.headers
                if 300 <= response.status < 400:
                    # Following it would send the access token wherever Location points.
                    raise ChannelError(f"{what}: Shopify redirected to "
                                       f"{response.headers.get('Location')!r}; set the shop's "
                                       "base_url to its myshopify.com address",
                                       code=str(response.status))
                return await read_json(response, what), response.headers
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"{what}: {type(e).__name__}: {e}") from e


def _base_url(shop: ShopConfig) -> str:
    configured = shop.options.get("base_url")
    if configured:
        return configured.rstrip("/")
    name = shop.shop.strip().lower()
    if not SHOP_NAME.fullmatch(name):
        raise ConfigurationError(f"shop shopify/{shop.shop}: name it by its myshopify.com domain "
                                 "or set the option base_url")
    return f"https://{name}" if "." in name else f"https://{name}.myshopify.com"


def _number(shop: ShopConfig, option: str, default: float, ceiling: float | None = None) -> float:
    try:
        value = float(shop.option(option, str(default)))
    except ValueError:
        value = 0.0
    if not 0 < value <= (ceiling or float("inf")):
        limit = f" up to {ceiling:g}" if ceiling else ""
        raise ConfigurationError(f"shop shopify/{shop.shop}: option {option} must be a positive "
                                 f"number{limit}")
    return value


def _iso(moment: datetime) -> str:
    """UTC, whole seconds: `updated_at` has no fraction, and `Z` needs no escaping in a URL."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_page(link: str | None) -> str | None:
    """The page_info of the Link header's rel="next" URL, None on the last page."""
    match = NEXT_LINK.search(link or "")
    if match is None:
        return None
    values = parse_qs(urlsplit(match[1]).query).get("page_info")
    return values[0] if values else None
