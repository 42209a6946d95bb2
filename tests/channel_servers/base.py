"""Run an aiohttp application on a free loopback port in a background thread for a test.

Each channel's fake server builds an `aiohttp.web.Application` that checks the real request
signature, serves pages, rejects windows that are too wide and throttles; the client under test
talks to it over real HTTP through `server.url`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web


class RunningServer:
    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.loop = loop


@contextmanager
def serve(app: web.Application) -> Iterator[RunningServer]:
    """Serve `app` on 127.0.0.1:<free port> until the block ends."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["port"] = runner.addresses[0][1]
        holder["runner"] = runner
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="channel-server", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("channel server did not start")
    try:
        yield RunningServer(f"http://127.0.0.1:{holder['port']}", loop)
    finally:
        runner = holder["runner"]
        assert isinstance(runner, web.AppRunner)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
