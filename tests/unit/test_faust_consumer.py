"""The stage workers' consumer long-polls for the configured time, not faust's fixed 1,500 ms."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runtime.faust_consumer import with_fetch_wait
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.worker import make_app


def _worker_consumer(tmp_path: Path, wait_ms: int | None) -> object:
    return asyncio.run(_build(tmp_path, wait_ms))


async def _build(tmp_path: Path, wait_ms: int | None) -> object:
    """aiokafka clients need a running loop to be built; nothing connects."""
    settings = Settings().model_copy(update={"data_dir": tmp_path})
    app = make_app(settings, Endpoints("127.0.0.1:9", "postgresql+psycopg://x@127.0.0.1/x"),
                   f"test-fetch-wait-{wait_ms}")
    if wait_ms is not None:
        with_fetch_wait(app, wait_ms)
    thread = app.consumer._thread  # built with the consumer; the aiokafka client is not started
    return thread._create_worker_consumer(app.transport)


def test_the_configured_fetch_wait_reaches_aiokafka(tmp_path: Path) -> None:
    assert _worker_consumer(tmp_path, 20)._fetch_max_wait_ms == 20  # type: ignore[attr-defined]


def test_without_it_faust_waits_1500_ms(tmp_path: Path) -> None:
    # What the override exists for: if faust changes this, the override may be unnecessary.
    assert _worker_consumer(tmp_path, None)._fetch_max_wait_ms == 1500  # type: ignore[attr-defined]


def test_the_override_is_per_app(tmp_path: Path) -> None:
    _worker_consumer(tmp_path / "a", 20)
    assert _worker_consumer(tmp_path / "b", None)._fetch_max_wait_ms == 1500  # type: ignore[attr-defined]
