"""The poll loop: walk each shop's incremental windows from its cursor, produce, then advance.

Per shop: the cursor (`poll_cursors.position`) says everything modified before it is on
`orders.raw`. A run starts `overlap` before the cursor (channels index late), walks windows no
wider than the channel allows up to now, pages through each, produces every page and waits for
the broker's acks, and only then moves the cursor to the window's end — so a crash re-reads at
most one window and never skips one. Throttling and transient failures back off (honouring the
channel's Retry-After); a channel error (bad credentials, bad parameters) stops the run and is
kept in `poll_cursors.last_error` for `orderhub shops list`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

import aiohttp
from sqlalchemy import Connection, Engine, text
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from ingest.process import adapter_for
from ingest.publish import Publisher
from ingest.pull import ChannelError, Clock, PullClient, ShopConfig, Throttled, windows
from ingest.push import MessageSource
from runtime.db import in_transaction
from runtime.settings import PollSettings
from schemas.errors import ConfigurationError, InvalidInput, TransientError

log = logging.getLogger(__name__)
CALL_ATTEMPTS = 6


def pull_channels() -> list[str]:
    """Channels whose module provides a pull client."""
    from ingest.process import ADAPTERS

    return [c.value for c, module in ADAPTERS.items() if hasattr(module, "Client")]


def client_class(channel: str) -> Callable[[ShopConfig, aiohttp.ClientSession, Clock], PullClient]:
    module = adapter_for(channel)
    if not hasattr(module, "Client"):
        raise ConfigurationError(f"channel {channel!r} cannot be polled; channels with a pull "
                                 f"client: {', '.join(pull_channels())}")
    return cast(Callable[[ShopConfig, aiohttp.ClientSession, Clock], PullClient], module.Client)


def message_class(channel: str
                  ) -> Callable[[ShopConfig, aiohttp.ClientSession, Clock], MessageSource] | None:
    module = adapter_for(channel)
    found = getattr(module, "Messages", None)
    return cast(Callable[[ShopConfig, aiohttp.ClientSession, Clock], MessageSource] | None, found)


@dataclass(frozen=True)
class RunReport:
    windows: int
    pages: int
    orders: int
    rejected: int
    position: datetime | None


class Cursors:
    """The per-shop positions in Postgres."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, channel: str, shop: str) -> datetime | None:
        def work(conn: Connection) -> datetime | None:
            return cast(datetime | None, conn.execute(
                text("SELECT position FROM poll_cursors WHERE channel = :c AND shop = :s"),
                {"c": channel, "s": shop}).scalar())
        return in_transaction(self.engine, work)

    def save(self, channel: str, shop: str, position: datetime, orders: int) -> None:
        in_transaction(self.engine, lambda conn: conn.execute(
            text("INSERT INTO poll_cursors (channel, shop, position, orders_seen) "
                 "VALUES (:c, :s, :p, :n) ON CONFLICT (channel, shop) DO UPDATE SET "
                 "position = EXCLUDED.position, orders_seen = poll_cursors.orders_seen + :n, "
                 "last_error = NULL, updated_at = now()"),
            {"c": channel, "s": shop, "p": position, "n": orders}))

    def failed(self, channel: str, shop: str, error: str, position: datetime) -> None:
        in_transaction(self.engine, lambda conn: conn.execute(
            text("INSERT INTO poll_cursors (channel, shop, position, last_error) "
                 "VALUES (:c, :s, :p, :e) ON CONFLICT (channel, shop) DO UPDATE SET "
                 "last_error = EXCLUDED.last_error, updated_at = now()"),
            {"c": channel, "s": shop, "p": position, "e": error[:500]}))


class ShopPoller:
    """Polls one shop: windows from its cursor, pushed ids to fetch, message frames."""

    def __init__(
        self, shop: ShopConfig, client: PullClient, publisher: Publisher, cursors: Cursors,
        settings: PollSettings, clock: Clock, sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.shop = shop
        self.client = client
        self.publisher = publisher
        self.cursors = cursors
        self.settings = settings
        self.clock = clock
        self.sleep = sleep

    async def run_once(self, since: datetime | None = None) -> RunReport:
        """Walk from `since` (else the cursor, else the first look-back) up to now."""
        channel, name = self.shop.channel, self.shop.shop
        cursor = await asyncio.to_thread(self.cursors.load, channel, name)
        now = self.clock()
        if since is not None:
            start = since
        elif cursor is not None:
            start = cursor - timedelta(seconds=self.settings.overlap_s)
        else:
            start = now - timedelta(seconds=self.settings.first_lookback_s)
        n_windows = pages = orders = rejected = 0
        position = cursor
        try:
            for window in windows(start, now, self.client.max_window, self.client.end_lag):
                page: str | None = None
                found = 0
                while True:
                    result = await self._call(partial(self.client.fetch, window, page))
                    pages += 1
                    items = [(f"poll:{channel}:{name}:{window.end.isoformat()}:"
                              f"{_native_id(channel, payload, i)}", payload)
                             for i, payload in enumerate(result.orders)]
                    outcome = await asyncio.to_thread(self.publisher.orders, channel, name,
                                                      "poll", items)
                    found += outcome.orders
                    rejected += outcome.rejected
                    if result.next is None:
                        break
                    page = result.next
                n_windows += 1
                orders += found
                if position is None or window.end > position:
                    position = window.end
                    await asyncio.to_thread(self.cursors.save, channel, name, position, found)
        except ChannelError as e:
            log.error("poll %s/%s stopped: %s", channel, name, e)
            await asyncio.to_thread(self.cursors.failed, channel, name, str(e), position or start)
            raise
        return RunReport(n_windows, pages, orders, rejected, position)

    async def fetch_requested(self, limit: int = 50) -> int:
        """Fetch in full the orders pushes only notified about; returns how many were produced."""
        channel, name = self.shop.channel, self.shop.shop
        ids = await asyncio.to_thread(_pending_fetches, self.publisher.engine, channel, name,
                                      limit)
        produced = 0
        for native_id in ids:
            try:
                payload = await self._call(partial(self.client.fetch_order, native_id))
            except (TransientError, ChannelError, InvalidInput) as e:
                await asyncio.to_thread(_fetch_failed, self.publisher.engine, channel, name,
                                        native_id, str(e))
                continue
            if payload is not None:
                outcome = await asyncio.to_thread(
                    self.publisher.orders, channel, name, "poll",
                    [(f"fetch:{channel}:{name}:{native_id}:{self.clock().isoformat()}", payload)])
                produced += outcome.orders
            else:
                log.warning("poll %s/%s: pushed order %s is unknown to the channel", channel,
                            name, native_id)
            await asyncio.to_thread(_fetch_done, self.publisher.engine, channel, name, native_id)
        return produced

    async def _call(self, request: Callable[[], Any]) -> Any:
        """One channel call with backoff on throttling and transient failures (bounded)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError), stop=stop_after_attempt(CALL_ATTEMPTS),
            wait=self._wait, sleep=self.sleep, reraise=True,
            before_sleep=lambda state: log.warning(
                "poll %s/%s: %s; retrying", self.shop.channel, self.shop.shop,
                state.outcome.exception() if state.outcome else "?"),
        )
        async for attempt in retrying:
            with attempt:
                try:
                    result = await request()
                except Throttled:
                    self.publisher.metrics.polls.labels(channel=self.shop.channel,
                                                        outcome="throttled").inc()
                    raise
                except TransientError:
                    self.publisher.metrics.polls.labels(channel=self.shop.channel,
                                                        outcome="transient").inc()
                    raise
                self.publisher.metrics.polls.labels(channel=self.shop.channel,
                                                    outcome="ok").inc()
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: Any) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, Throttled) and error.retry_after_s:
            return min(error.retry_after_s, self.settings.max_backoff_s)
        return float(min(2 ** state.attempt_number * 0.5, self.settings.max_backoff_s))


async def run_shop(poller: ShopPoller, messages: MessageSource | None, stop: asyncio.Event
                   ) -> None:
    """The endless loop of one shop inside `orderhub up` / `stage ingest-poll`."""
    shop = poller.shop
    next_poll = 0.0
    loop = asyncio.get_running_loop()
    failures = 0
    while not stop.is_set():
        try:
            if loop.time() >= next_poll:
                report = await poller.run_once()
                log.info("poll %s/%s: %d order(s) in %d window(s)", shop.channel, shop.shop,
                         report.orders, report.windows)
                next_poll = loop.time() + shop.poll_interval_s
            await poller.fetch_requested()
            if messages is not None:
                await _relay_messages(poller.publisher, shop.channel, messages)
            failures = 0
        except (TransientError, ChannelError, ConfigurationError, InvalidInput) as e:
            # InvalidInput here is a channel answer we cannot read: back off like any failure.
            failures += 1
            pause = min(2.0 ** failures, poller.settings.max_backoff_s)
            log.error("poll %s/%s failed (%s); next attempt in %.0f s", shop.channel, shop.shop,
                      e, pause)
            next_poll = loop.time() + pause
            await _wait(stop, pause)
            continue
        await _wait(stop, poller.settings.fetch_check_s)


async def _relay_messages(publisher: Publisher, channel: str, source: MessageSource) -> None:
    """Produce every frame of a batch (a refused one to the DLQ), and only then confirm them."""
    deliveries = await source.messages()
    for delivery in deliveries:
        await asyncio.to_thread(publisher.push, channel, "webhook", delivery)
    if deliveries:
        await source.confirm(deliveries)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _native_id(channel: str, payload: Mapping[str, Any], index: int) -> str:
    """The order's own id for its delivery id (a page re-read gives the same ids)."""
    try:
        return str(adapter_for(channel).native_id(payload))
    except (InvalidInput, KeyError, TypeError):
        return f"#{index}"  # the publisher dead-letters it with the reason


def _pending_fetches(engine: Engine, channel: str, shop: str, limit: int) -> list[str]:
    def work(conn: Connection) -> list[str]:
        return list(conn.execute(
            text("SELECT native_id FROM fetch_requests WHERE channel = :c AND shop = :s "
                 "AND attempts < 10 ORDER BY requested_at LIMIT :n"),
            {"c": channel, "s": shop, "n": limit}).scalars())
    return in_transaction(engine, work)


def _fetch_done(engine: Engine, channel: str, shop: str, native_id: str) -> None:
    in_transaction(engine, lambda conn: conn.execute(
        text("DELETE FROM fetch_requests WHERE channel = :c AND shop = :s AND native_id = :n"),
        {"c": channel, "s": shop, "n": native_id}))


def _fetch_failed(engine: Engine, channel: str, shop: str, native_id: str, error: str) -> None:
    in_transaction(engine, lambda conn: conn.execute(
        text("UPDATE fetch_requests SET attempts = attempts + 1, last_error = :e "
             "WHERE channel = :c AND shop = :s AND native_id = :n"),
        {"c": channel, "s": shop, "n": native_id, "e": error[:500]}))


def resolve_shops(shops: list[Any], environ: Mapping[str, str]) -> list[ShopConfig]:
    """Resolve each enabled shop's credentials; a shop missing one is logged and skipped."""
    resolved: list[ShopConfig] = []
    for shop in shops:
        if not shop.enabled:
            continue
        try:
            resolved.append(shop.resolve(environ))
        except ConfigurationError as e:
            log.error("%s; not polling it", e)
    return resolved
