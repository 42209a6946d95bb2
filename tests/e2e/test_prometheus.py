from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine, text

from allocate.projection import add_warehouse, set_stock
from ingest.agent import ingest_file, produce_all
from ingest.demo_channels import generate_orders, required_stock_all
from normalize.rates import RateTable
from runtime.db import in_transaction
from runtime.kafka import make_producer
from runtime.kpi import CYCLE_BUCKETS, DLQ_STAGES, HOLD_REASONS, METRIC_NAMES, PENDING, read_kpis
from runtime.processes import up_processes
from runtime.settings import Settings
from runtime.stages import STAGES
from schemas.base import SHANGHAI
from schemas.events import OrderStatusChanged
from schemas.order import Channel, OrderStatus
from schemas.topics import RAW, STATUS
from tests.conftest import REPO, run_cli
from tests.prometheus import Prometheus, PrometheusUnavailable, find_prometheus, scrape_config

N = 30
SHIPPED = 4
SHORT_SKU_UNITS = 0  # one SKU has no stock at all: its orders are backordered
T = TypeVar("T")
# What each stage writes when orders pass (notify's sends are its own business).
PRODUCES = {"normalize": {"orders.normalized"}, "dedup": {"orders.accepted"},
            "allocate": {"orders.allocated", "orders.held"}}


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    try:
        return find_prometheus()
    except PrometheusUnavailable as e:
        pytest.fail(str(e))


def _free_block(count: int) -> int:
    """A first port such that it and the next count-1 are all free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base
    raise AssertionError("no block of free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (AssertionError, OSError) as e:
            last = e
        else:
            if result is not None:
                return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def hub(settings: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    """`orderhub up` on the test broker and database; yields process name -> host:port."""
    names = (*STAGES, *up_processes(settings))
    base = _free_block(len(names))
    env = {**os.environ, "ORDERHUB_KPI__REFRESH_S": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "up", "--metrics-port", str(base)], cwd=REPO,
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "hub.log").open("wb"), start_new_session=True)
    try:
        _until(lambda: b"ready:" in (tmp_path / "hub.log").read_bytes() or None, 60, "the hub")
        yield {name: f"127.0.0.1:{base + i}" for i, name in enumerate(names)}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = (tmp_path / "hub.log").read_text(errors="replace")
    assert proc.returncode == 0 and "restarting" not in log, log[-3000:]


def _feed(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    """N demo orders of every channel paid in the last minutes (today, GMT+8), one SKU out of
    stock, one SKU below its safety stock, and a message normalize must dead-letter."""
    now = datetime.now(SHANGHAI)
    start = max(now - timedelta(minutes=40),
                now.replace(hour=0, minute=0, second=1, microsecond=0))
    orders = generate_orders(N, seed=7, start=start)
    needed = sorted(required_stock_all(orders, RateTable.from_mapping(settings.rates)).items())

    def stock_up(conn: Connection) -> None:
        add_warehouse(conn, "WH-HZ", "杭州仓", "浙江省", "杭州市", 10)
        for i, (sku, qty) in enumerate(needed):
            set_stock(conn, "WH-HZ", sku, SHORT_SKU_UNITS if i == 0 else qty + 5)
        conn.execute(text("UPDATE stock SET safety_stock = on_hand + 1 WHERE sku = :s"),
                     {"s": needed[-1][0]})

    in_transaction(engine, stock_up)
    assert settings.kafka.bootstrap is not None
    producer = make_producer(settings.kafka.bootstrap, "test-prometheus")
    for channel, shop in sorted({(o.channel, o.shop) for o in orders}):
        path = tmp_path / f"{channel}-{shop}.jsonl"
        path.write_text("".join(json.dumps(o.payload, ensure_ascii=False) + "\n"
                                for o in orders if (o.channel, o.shop) == (channel, shop)))
        ingest_file(channel, path, shop, settings=settings, producer=producer, engine=engine,
                    registry=CollectorRegistry())
    produce_all(producer, settings, [(RAW.full_name(settings.kafka.topic_prefix), "bad:1",
                                      b"not an envelope")])


def _settled(engine: Engine) -> dict[str, int] | None:
    with engine.connect() as conn:
        statuses = {s: n for s, n in conn.execute(text(
            "SELECT status, count(*) FROM orders GROUP BY 1"))}
        dead = conn.execute(text("SELECT count(*) FROM dead_letters")).scalar_one()
    done = sum(statuses.values()) == N and not statuses.get("paid") and dead >= 1
    return statuses if done else None


def _ship(settings: Settings, engine: Engine) -> list[str]:
    """The carrier picks up the first allocated orders now (or just after payment)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, paid_at FROM orders WHERE status = 'allocated' ORDER BY paid_at, id "
            "LIMIT :n"), {"n": SHIPPED}).all()
    assert len(rows) == SHIPPED
    now = datetime.now(SHANGHAI)
    assert settings.kafka.bootstrap is not None
    events = [OrderStatusChanged(order_id=oid, status=OrderStatus.SHIPPED, source="warehouse",
                                 at=max(now, paid + timedelta(minutes=1)), carrier="SF",
                                 waybill=f"SF{i:010d}") for i, (oid, paid) in enumerate(rows)]
    produce_all(make_producer(settings.kafka.bootstrap, "test-ship"), settings, [
        (STATUS.full_name(settings.kafka.topic_prefix), e.order_id, e.model_dump_json().encode())
        for e in events])
    return [oid for oid, _ in rows]


def _all_shipped(engine: Engine, ids: list[str]) -> bool | None:
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM allocations WHERE order_id = ANY(:ids) "
                                 "AND shipped_at IS NULL"), {"ids": ids}).scalar_one()
    return True if left == 0 else None


def _all_up(prom: Prometheus, count: int) -> list[dict[str, Any]] | None:
    targets = prom.targets()
    up = len(targets) == count and all(t["health"] == "up" for t in targets)
    return targets if up else None


def _stage_series(prom: Prometheus, stage: str) -> bool:
    sel = f'job="{stage}",stage="{stage}"'
    consumed = prom.values(f"orderhub_{stage}_consumed_total{{{sel}}}", "outcome")
    assert consumed.get("ok", 0) > 0, (stage, consumed)
    produced = prom.values(f"orderhub_{stage}_produced_total{{{sel}}}", "topic")
    assert PRODUCES.get(stage, set()) <= {t for t, n in produced.items() if n > 0}, produced
    for name in ("batch_seconds", "projection_seconds", "batch_size", "latency_seconds"):
        assert prom.values(f"orderhub_{stage}_{name}_count{{{sel}}}", "stage")[stage] > 0
        les = prom.values(f"orderhub_{stage}_{name}_bucket{{{sel}}}", "le")
        assert les["+Inf"] > 0 and len(les) > 2, (stage, name, les)
    lag = prom.series(f"orderhub_{stage}_consumer_lag")
    sources = {spec.name for spec in STAGES[stage].sources}
    assert {(s["topic"], s["partition"]) for s in lag} == {
        (t, str(p)) for t in sources for p in range(settings_partitions())}, (stage, lag)
    assert all(v == 0 for v in prom.values(
        f"orderhub_{stage}_consumer_lag{{{sel}}}", "partition").values()), stage
    if stage == "notify":
        sent = prom.values(f"orderhub_notify_sent_total{{{sel}}}", "provider")
        assert sent.get("log", 0) > 0, sent
    return True


def settings_partitions() -> int:
    return Settings().kafka.partitions


def _kpis_match(prom: Prometheus, engine: Engine, settings: Settings) -> dict[str, Any]:
    """Prometheus's latest KPI samples equal a reading taken now from the projection."""
    k = read_kpis(engine, datetime.now(SHANGHAI), settings.kpi)
    sel = '{job="kpi"}'

    def one(name: str) -> float:
        (value,) = prom.values(f"orderhub_kpi_{name}{sel}", "").values()
        return value

    cycle = prom.values(f"orderhub_kpi_fulfillment_cycle_hours_bucket{sel}", "le")
    seen: dict[str, Any] = {
        "pending": prom.values(f"orderhub_kpi_pending_orders{sel}", "status"),
        "holds": prom.values(f"orderhub_kpi_holds{sel}", "reason"),
        "today": prom.values(f"orderhub_kpi_orders_today{sel}", "channel"),
        "dead": prom.values(f"orderhub_kpi_dead_letters{sel}", "stage"),
        "low": one("low_stock_skus"), "anomaly": one("anomaly_ratio"),
        "same_day": one("same_day_ship_ratio"), "duplicate": one("duplicate_ratio"),
        "cycle_count": one("fulfillment_cycle_hours_count"),
        "cycle_sum": one("fulfillment_cycle_hours_sum"), "cycle_le": set(cycle),
    }
    expected: dict[str, Any] = {
        "pending": k.pending, "holds": k.holds, "today": k.orders_today,
        "dead": {s: k.dead_letters.get(s, 0) for s in DLQ_STAGES} | k.dead_letters,
        "low": k.low_stock_skus, "anomaly": k.anomaly_ratio, "same_day": k.same_day_ship_ratio,
        "duplicate": k.duplicate_ratio, "cycle_count": len(k.cycle_hours),
        "cycle_le": {str(float(b)) for b in CYCLE_BUCKETS} | {"+Inf"},
    }
    ratios = ("anomaly", "same_day", "duplicate")
    close = all(abs(seen[r] - expected[r]) < 1e-9 for r in ratios) and abs(
        seen["cycle_sum"] - sum(k.cycle_hours)) < 1e-6
    exact = {key: v for key, v in seen.items() if key not in (*ratios, "cycle_sum")}
    same = exact == {key: v for key, v in expected.items() if key not in ratios}
    if not (close and same):
        raise AssertionError(f"Prometheus {seen} != projection {expected}")
    return {"kpis": k, "seen": seen}


def _status_drained() -> dict[str, Any] | None:
    status = run_cli("status", "--json", timeout=60)
    assert status.returncode == 0, status.stderr[-3000:]
    data: dict[str, Any] = json.loads(status.stdout)
    lags = [(r["stage"], r["lag"]) for r in data["pipeline"]]
    return data if lags == [("ingest", None), *((s, 0) for s in STAGES)] else None


def test_a_real_prometheus_scrapes_every_process_and_holds_every_kpi_and_stage_series(
    settings: Settings, engine: Engine, hub: dict[str, str], prometheus_binary: Path,
    tmp_path: Path,
) -> None:
    assert set(DLQ_STAGES) == {"ingest", *STAGES}
    told = (tmp_path / "hub.log").read_text()
    for name, address in hub.items():
        assert f"metrics: {name:<12} http://{address}/metrics" in told
    assert "dashboard: " in told and "deploy/grafana/dashboards/" in told
    prom = Prometheus(prometheus_binary, tmp_path / "prometheus", _free_block(1))
    prom.start(scrape_config(hub, interval_s=1.0))
    try:
        _feed(settings, engine, tmp_path)
        statuses = _until(lambda: _settled(engine), 90, "every order decided")
        assert statuses.get("backordered", 0) > 0 and statuses.get("allocated", 0) > SHIPPED
        shipped = _ship(settings, engine)
        _until(lambda: _all_shipped(engine, shipped), 30, "the shipments confirmed")

        targets = _until(lambda: _all_up(prom, len(hub)), 30, "every target up")
        assert {t["labels"]["stage"] for t in targets} == set(hub)
        assert {t["labels"]["instance"] for t in targets} == set(hub.values())
        assert {t["labels"]["job"] for t in targets} == set(hub)
        assert prom.values("up", "stage") == {name: 1.0 for name in hub}

        for stage in STAGES:
            _until(functools.partial(_stage_series, prom, stage), 20, f"{stage}'s series")
        dead = prom.values('orderhub_normalize_consumed_total{job="normalize"}', "outcome")
        assert dead.get("dead_lettered", 0) >= 1

        for name in METRIC_NAMES:
            kind = ("_bucket", "_sum", "_count") if name.endswith("_hours") else ("",)
            for suffix in kind:
                found = prom.series(f"{name}{suffix}")
                assert found, f"{name}{suffix} missing from Prometheus"
                assert {s["job"] for s in found} == {"kpi"}
                if name != "orderhub_kpi_dead_letters":
                    assert {s["stage"] for s in found} == {"kpi"}
        assert {s["status"] for s in prom.series("orderhub_kpi_pending_orders")} == {
            s.value for s in PENDING}
        assert {s["reason"] for s in prom.series("orderhub_kpi_holds")} == set(HOLD_REASONS)
        assert {s["channel"] for s in prom.series("orderhub_kpi_orders_today")} == {
            c.value for c in Channel}
        assert {s["stage"] for s in prom.series("orderhub_kpi_dead_letters")} == set(DLQ_STAGES)

        match = _until(lambda: _kpis_match(prom, engine, settings), 30,
                       "Prometheus's KPIs to equal the projection's")
        k, seen = match["kpis"], match["seen"]
        assert sum(seen["today"].values()) == N
        assert seen["holds"]["out_of_stock"] == statuses["backordered"]
        assert seen["dead"]["normalize"] >= 1 and seen["low"] >= 1
        assert seen["cycle_count"] == SHIPPED and 0 < k.anomaly_ratio < 1
        assert 0 < seen["same_day"] <= 1 and k.shipped_due >= SHIPPED
        assert prom.values('orderhub_kpi_refresh_seconds{job="kpi"}', "stage")["kpi"] > 0
        age = time.time() - prom.values(
            'orderhub_kpi_refreshed_timestamp_seconds{job="kpi"}', "stage")["kpi"]
        assert 0 <= age < 10

        data = _until(lambda: _status_drained(), 60, "`orderhub status` showing no lag")
        assert data["pending_orders"] == seen["pending"]
        assert data["fulfillment_cycle_hours"]["count"] == SHIPPED
    except BaseException:
        print(prom.logs())
        raise
    finally:
        prom.stop()
