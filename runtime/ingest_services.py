"""The two ingest processes next to the stages: the push receiver and the pollers.

`orderhub stage ingest-http` serves the webhooks; `orderhub stage ingest-poll` runs one loop per
configured shop (windows from the cursor, pushed ids to fetch, message frames where the shop
turned them on with `--option messages=on`). Both stop cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import aiohttp
from prometheus_client import CollectorRegistry

from ingest import metrics, shops
from ingest.poller import (
    Cursors,
    RunReport,
    ShopPoller,
    client_class,
    message_class,
    resolve_shops,
    run_shop,
)
from ingest.publish import Publisher
from ingest.pull import ShopConfig, utc_now
from ingest.receiver import build_app, serve
from runtime.db import in_transaction, make_engine
from runtime.health import always_ready, serve_metrics
from runtime.kafka import make_producer
from runtime.services import Endpoints
from runtime.settings import Settings
from schemas.errors import ConfigurationError

log = logging.getLogger(__name__)


def make_publisher(settings: Settings, endpoints: Endpoints, registry: CollectorRegistry,
                   client_id: str, ack_timeout_s: float = 60.0) -> Publisher:
    return Publisher(settings, make_producer(endpoints.bootstrap, client_id),
                     make_engine(endpoints.database_url, settings.database.pool_size),
                     metrics.build(registry), ack_timeout_s)


def run_service(name: str, settings: Settings, endpoints: Endpoints, metrics_port: int,
                environ: Mapping[str, str] | None = None) -> None:
    """Run `ingest-http` or `ingest-poll` until SIGTERM/SIGINT."""
    registry = CollectorRegistry()
    if metrics_port:
        serve_metrics(settings.metrics.host, metrics_port, registry, ready=always_ready)
    if name == "ingest-http":
        publisher = make_publisher(settings, endpoints, registry, "orderhub-ingest-http",
                                   ack_timeout_s=3.5)
        asyncio.run(_until_signal(lambda stop: _http(publisher, settings, stop)))
    elif name == "ingest-poll":
        publisher = make_publisher(settings, endpoints, registry, "orderhub-ingest-poll")
        env = dict(os.environ if environ is None else environ)
        asyncio.run(_until_signal(lambda stop: _poll_all(publisher, settings, env, stop)))
    else:
        raise ConfigurationError(f"unknown ingest service {name!r}; services: "
                                 "ingest-http, ingest-poll")


async def _until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


async def _http(publisher: Publisher, settings: Settings, stop: asyncio.Event) -> None:
    app = build_app(publisher, settings.webhooks)
    await serve(app, settings.webhooks.host, settings.webhooks.port, stop)


async def _poll_all(publisher: Publisher, settings: Settings, environ: Mapping[str, str],
                    stop: asyncio.Event) -> None:
    configured = in_transaction(publisher.engine, shops.load)
    resolved = resolve_shops(configured, environ)
    if not resolved:
        log.info("no shop to poll (add one with `orderhub shops add`); waiting for SIGTERM")
        await stop.wait()
        return
    cursors = Cursors(publisher.engine)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks = []
        for shop in resolved:
            client = client_class(shop.channel)(shop, session, utc_now)
            poller = ShopPoller(shop, client, publisher, cursors, settings.poll, utc_now)
            source_class = message_class(shop.channel)
            messages = (source_class(shop, session, utc_now)
                        if source_class is not None and shop.options.get("messages") == "on"
                        else None)
            log.info("polling %s/%s every %.0f s%s", shop.channel, shop.shop,
                     shop.poll_interval_s, " with message frames" if messages else "")
            tasks.append(asyncio.create_task(run_shop(poller, messages, stop)))
        await asyncio.gather(*tasks)


def poll_once(settings: Settings, endpoints: Endpoints, channel: str, shop_name: str,
              since: datetime | None, environ: Mapping[str, str]) -> RunReport:
    """`orderhub poll CHANNEL --shop S [--since T]`: one run up to now, then exit."""
    publisher = make_publisher(settings, endpoints, CollectorRegistry(), "orderhub-poll")
    found = in_transaction(publisher.engine, lambda c: shops.load(c, channel, shop_name))
    if not found:
        raise ConfigurationError(
            f"no shop {channel}/{shop_name}; add it with `orderhub shops add {channel} "
            f"{shop_name} --credential NAME=ENV_VAR ...` (see `orderhub shops list`)")
    shop: ShopConfig = found[0].resolve(environ)

    async def run() -> RunReport:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            client = client_class(channel)(shop, session, utc_now)
            poller = ShopPoller(shop, client, publisher, Cursors(publisher.engine),
                                settings.poll, utc_now)
            report = await poller.run_once(since)
            await poller.fetch_requested()
            return report

    return asyncio.run(run())
