"""The hub's lifecycle: embedded services, migrations, topics, stage processes, demo data."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine

from allocate.projection import add_warehouse, set_stock
from ingest.agent import ingest_file
from ingest.demo import demo_warehouse
from ingest.demo_channels import generate_orders, required_stock_all
from normalize.rates import RateTable
from runtime.db import in_transaction, make_engine, migrate
from runtime.kafka import create_topics, make_producer
from runtime.processes import PROCESSES, up_processes
from runtime.services import (
    EmbeddedPostgres,
    Endpoints,
    TansuBroker,
    discover,
    forget,
    reap_orphans,
    record,
)
from runtime.settings import Settings
from runtime.stages import STAGES
from runtime.supervisor import StageProcesses, wait_until_drained
from runtime.views import status_counts
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError

log = logging.getLogger(__name__)
Report = Callable[[str], None]
DEMO_SEED = 20261111
DASHBOARDS = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"


def prepare(settings: Settings, endpoints: Endpoints) -> None:
    """Schema at head and every registry topic present (both idempotent)."""
    migrate(endpoints.database_url)
    k = settings.kafka
    create_topics(endpoints.bootstrap, k.topic_prefix, k.partitions, k.replication_factor)


@contextmanager
def services(settings: Settings, report: Report) -> Iterator[Endpoints]:
    """Endpoints from settings, starting the embedded broker / Postgres for what is unset."""
    data_dir = settings.data_dir
    try:
        running = discover(settings)
    except ConfigurationError:
        running = None
    if running is not None and not (settings.kafka.bootstrap and settings.database.url):
        raise ConfigurationError(
            f"an orderhub is already running from {data_dir.resolve()} (broker "
            f"{running.bootstrap}); stop it first or use another --data-dir"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    for pid in reap_orphans(data_dir):
        report(f"stopped broker {pid} left behind by a hub that was killed")
    broker = pg = None
    try:
        bootstrap = settings.kafka.bootstrap
        if bootstrap is None:
            broker = TansuBroker(log_path=data_dir / "broker.log")
            broker.start()
            bootstrap = broker.bootstrap
            report(f"embedded Kafka-protocol broker (Tansu, in memory) on {bootstrap}")
        url = settings.database.url
        if url is None:
            pg = EmbeddedPostgres(data_dir)
            url = pg.start()
            report(f"embedded Postgres, data in {pg.pgdata}")
        endpoints = Endpoints(bootstrap, url)
        pids = {"hub": os.getpid(), **({"broker": broker.pid} if broker else {})}
        record(data_dir, endpoints, pids)
        yield endpoints
    finally:
        forget(data_dir)
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()


def load_demo(settings: Settings, endpoints: Endpoints, n: int, report: Report) -> None:
    """A demo warehouse with enough stock, then n orders across every channel through ingest."""
    start = datetime(2026, 11, 11, 0, 0, tzinfo=SHANGHAI)
    orders = generate_orders(n, seed=DEMO_SEED, start=start)
    engine = make_engine(endpoints.database_url)
    wh = demo_warehouse()
    needed = required_stock_all(orders, RateTable.from_mapping(settings.rates))

    def stock_up(conn: Connection) -> None:
        add_warehouse(conn, wh.code, wh.name, wh.province, wh.city, 10)
        for sku, qty in needed.items():
            set_stock(conn, wh.code, sku, qty * 2)

    in_transaction(engine, stock_up)
    demo_dir = settings.data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    producer = make_producer(endpoints.bootstrap, "orderhub-demo")
    for channel, shop in sorted({(o.channel, o.shop) for o in orders}):
        path = demo_dir / f"{channel}-{shop}.jsonl"
        path.write_text("".join(json.dumps(o.payload, ensure_ascii=False) + "\n"
                                for o in orders if (o.channel, o.shop) == (channel, shop)))
        sent = ingest_file(channel, path, shop, settings=settings, producer=producer,
                           engine=engine, registry=CollectorRegistry()).sent
        report(f"demo: {sent} {channel} orders from {shop} written to orders.raw")
    engine.dispose()


def run_up(settings: Settings, demo: int, metrics_port: int, report: Report) -> int:
    """Run every stage until SIGINT/SIGTERM, restarting a stage that stops on its own."""
    with services(settings, report) as endpoints:
        prepare(settings, endpoints)
        procs = StageProcesses(settings, endpoints, metrics_port,
                               (*STAGES, *up_processes(settings)))
        procs.start()
        report(f"stages running: {', '.join(procs.procs)}")
        for line in where_metrics(settings, procs.names, metrics_port):
            report(line)
        if settings.webhooks.port:
            report(f"webhooks: http://{settings.webhooks.host}:{settings.webhooks.port}"
                   "/webhooks/{shopify,douyin,wechat}")
        if demo:
            load_demo(settings, endpoints, demo, report)
        report(where_board())
        report("ready: try `orderhub status` or `orderhub orders list` in another terminal; "
               "Ctrl-C stops everything")
        try:
            _watch(procs, make_engine(endpoints.database_url), report)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
            report("stopping stages…")
            procs.stop()
    report("stopped")
    return 0


def where_metrics(settings: Settings, names: tuple[str, ...], base_port: int) -> list[str]:
    """Each process's /metrics URL: process i of `names` serves on base + i (StageProcesses)."""
    if not base_port:
        return ["metrics: off (--metrics-port 0)"]
    host = settings.metrics.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (a display)
    return [f"metrics: {name:<12} http://{shown}:{base_port + i}/metrics"
            + (f"  ({PROCESSES[name].help})" if name in PROCESSES else "")
            for i, name in enumerate(names)]


def where_board() -> str:
    """Where the Grafana dashboard is, and how to see the KPIs without Grafana."""
    boards = sorted(DASHBOARDS.glob("*.json")) or [DASHBOARDS / "*.json"]
    return (f"dashboard: {', '.join(map(str, boards))}: import into Grafana with a Prometheus "
            "scraping the metrics above, or run everything in containers with `docker compose "
            "-f deploy/docker-compose.yml --profile kafka1 up` (Grafana provisioned on "
            "http://localhost:3000); no Grafana: `orderhub status`")


class _Stop(Exception):
    pass


def _watch(procs: StageProcesses, engine: Engine, report: Report) -> None:
    def stop(signum: int, _frame: object) -> None:
        raise _Stop()

    # Both explicitly: a hub started from a script with `&` inherits SIGINT ignored, yet its
    # stages would still stop on the group's Ctrl-C, and the hub must stop with them.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last: dict[str, int] = {}
    next_report = time.monotonic()
    try:
        while True:
            for name, rc in procs.failed().items():
                report(f"stage {name} exited with code {rc}; restarting it")
                procs.restart(name)
            if time.monotonic() >= next_report:
                counts = in_transaction(engine, status_counts)
                if counts != last:
                    report("orders by status: " + json.dumps(counts))
                    last = counts
                next_report = time.monotonic() + 5
            time.sleep(0.5)
    except _Stop:
        return
    finally:
        engine.dispose()


def run_drain(settings: Settings, timeout: float, report: Report) -> bool:
    """Run the stages until every input is processed and every projection written."""
    endpoints = discover(settings)
    prepare(settings, endpoints)
    procs = StageProcesses(settings, endpoints, 0)
    procs.start()
    try:
        return wait_until_drained(settings, endpoints, procs, timeout, report)
    finally:
        procs.stop()

