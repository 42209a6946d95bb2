"""One stage worker process: a faust app whose single agent feeds batches to the runner."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server

from runtime.db import make_engine
from runtime.metrics import build_stage_metrics
from runtime.runner import Emit, Record, StageRunner
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES, group_id
from schemas.errors import TransientError
from schemas.topics import TOPICS

log = logging.getLogger(__name__)
EXIT_HALTED = 75  # EX_TEMPFAIL: restart me, I resume from my last commit


def make_app(settings: Settings, endpoints: Endpoints, app_id: str) -> faust.App:
    """A faust app on the given broker; topics come from the registry, never auto-declared."""
    brokers = ";".join(f"kafka://{h}" for h in endpoints.bootstrap.split(","))
    k = settings.kafka
    datadir = settings.data_dir.resolve() / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=brokers,
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=k.session_timeout_s,
        broker_heartbeat_interval=min(1.0, k.session_timeout_s / 3),
        broker_commit_interval=k.commit_interval_s,
        producer_acks=-1,
        stream_buffer_maxsize=max(4096, settings.stage.batch_size * 4),
    )


def run_stage(name: str, settings: Settings, endpoints: Endpoints, metrics_port: int) -> None:
    """Build the stage and run its worker until SIGTERM/SIGINT (or a fatal error)."""
    registry = CollectorRegistry()
    app = make_app(settings, endpoints, group_id(settings, name))
    stage = STAGES[name].build(settings, registry)
    prefix = settings.kafka.topic_prefix
    topics = {s: app.topic(s.full_name(prefix), key_serializer="raw", value_serializer="raw")
              for s in TOPICS}

    async def send(emits: Sequence[Emit]) -> None:
        try:
            pending = [
                await topics[e.topic].send(key=e.key.encode(), value=e.value.model_dump_json())
                for e in emits
            ]
            await asyncio.gather(*pending)
        except KafkaError as e:
            raise TransientError(f"broker refused a send: {e}") from e

    runner = StageRunner(
        stage, engine=make_engine(endpoints.database_url, settings.database.pool_size),
        send=send, metrics=build_stage_metrics(name, registry), settings=settings,
        group=group_id(settings, name),
    )
    source = app.topic(*(s.full_name(prefix) for s in stage.sources),
                       key_serializer="raw", value_serializer="raw")

    async def consume(stream: Any) -> None:
        batch, within = settings.stage.batch_size, settings.stage.batch_within_s
        async for events in stream.take_events(batch, within=within):
            records = [_record(e.message) for e in events]
            try:
                await runner.run_batch(records)
            except Exception:
                _halt(name)

    app.agent(source, name=f"{name}-agent", concurrency=1)(consume)
    if metrics_port:
        start_http_server(metrics_port, addr=settings.metrics.host, registry=registry)
    worker = faust.Worker(app, loglevel=logging.getLogger().level or "INFO", quiet=True,
                          override_logging=False)
    worker.execute_from_commandline()


def _record(message: Any) -> Record:
    return Record(message.topic, message.partition, message.offset, message.key, message.value)


def _halt(name: str) -> None:
    """Stop the process at once without committing: the failed batch is consumed again."""
    log.critical("%s: stopping the worker; it resumes from its last commit", name, exc_info=True)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_HALTED)
