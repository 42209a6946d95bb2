"""What every channel's pull client shares: shop config, windows, pages, throttling, rate limits.

A channel module (`ingest/<channel>.py`) provides a `Client` class satisfying `PullClient`; the
poll loop (`ingest/poller.py`) walks windows from the shop's cursor, pages through each window,
produces every order to `orders.raw` and only then moves the cursor, so a restart resumes
without a gap (and, thanks to the overlap, re-reads a little, which downstream dedups).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

import aiohttp

from schemas.errors import ChannelError as ChannelError  # re-exported: clients raise it
from schemas.errors import ConfigurationError, TransientError
from schemas.errors import Throttled as Throttled  # re-exported: clients raise it


@dataclass(frozen=True)
class ShopConfig:
    """One configured shop, with its credentials already resolved from their env variables.

    `credentials` maps the channel's credential names (e.g. `app_key`, `app_secret`,
    `access_token`) to secret values: never log or print them. `options` holds non-secret
    settings such as `base_url` (the API endpoint; tests point it at a local server) or
    `marketplace_ids` for Amazon.
    """

    channel: str
    shop: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, str] = field(default_factory=dict)
    poll_interval_s: float = 60.0

    def secret(self, name: str) -> str:
        """A credential, or ConfigurationError naming what to configure."""
        value = self.credentials.get(name)
        if not value:
            raise ConfigurationError(
                f"shop {self.channel}/{self.shop} has no credential {name!r}; add it with "
                f"`orderhub shops add {self.channel} {self.shop} --credential {name}=ENV_VAR`"
            )
        return value

    def option(self, name: str, default: str | None = None) -> str:
        value = self.options.get(name, default)
        if value is None:
            raise ConfigurationError(
                f"shop {self.channel}/{self.shop} has no option {name!r}; add it with "
                f"`orderhub shops add {self.channel} {self.shop} --option {name}=VALUE`"
            )
        return value


@dataclass(frozen=True)
class Window:
    """An incremental window [start, end) in aware datetimes."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Page:
    """One page of a window: full native order payloads (what the channel's mapper accepts,
    the same shape `unwrap` returns) and the token of the next page, None when the window is done.
    """

    orders: list[Mapping[str, Any]]
    next: str | None = None


class PullClient(Protocol):
    """A channel's pull client. Construct with `(shop, session, clock)`."""

    channel: ClassVar[str]
    max_window: ClassVar[timedelta]  # widest window the channel accepts
    end_lag: ClassVar[timedelta]  # how far behind now a window must end (Amazon: 2 min)

    async def fetch(self, window: Window, page: str | None) -> Page:
        """One page of orders modified in the window (`page` None = first page).

        Raises Throttled (retried after a pause), TransientError (network, 5xx: retried),
        ChannelError (stop this shop).
        """
        ...

    async def fetch_order(self, native_id: str) -> Mapping[str, Any] | None:
        """One order in full by its native id, None if the channel does not know it."""
        ...


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def windows(
    start: datetime, now: datetime, width: timedelta, end_lag: timedelta = timedelta(0)
) -> Iterator[Window]:
    """Consecutive windows from `start` up to `now - end_lag`, none wider than `width`."""
    stop = now - end_lag
    while start < stop:
        end = min(start + width, stop)
        yield Window(start, end)
        start = end


class RateLimiter:
    """Token bucket: `rate` requests per second with bursts up to `burst` (channel quotas)."""

    def __init__(self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.monotonic = monotonic
        self.stamp = monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = self.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


async def read_json(response: aiohttp.ClientResponse, what: str) -> Any:
    """The JSON body of a channel's answer, big integers exact; HTTP errors mapped to ours.

    429 → Throttled (honouring Retry-After), 5xx → TransientError, other 4xx → ChannelError.
    """
    body = await response.read()
    if response.status == 429:
        raise Throttled(f"{what}: HTTP 429", _retry_after(response.headers.get("Retry-After")))
    if response.status >= 500:
        raise TransientError(f"{what}: HTTP {response.status}")
    if response.status >= 400:
        raise ChannelError(f"{what}: HTTP {response.status}: {body[:200]!r}",
                           code=str(response.status))
    import json

    try:
        return json.loads(body)
    except ValueError as e:
        raise TransientError(f"{what}: answer is not JSON: {body[:200]!r}") from e


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
