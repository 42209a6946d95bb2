"""`python -m bench.dedup_state [--orders N] [--batch 500]`: dedup's state after N orders.

No broker: N distinct synthetic canonical orders go, in batches, through the dedup stage's real
projection path (`DedupStage.prepare` + `DedupStage.project`, one transaction per batch) in a
fresh Postgres database. Before each batch, the `orders` rows dedup locks are written with
normalize's own `write_orders` in a separate transaction, timed apart and not counted as dedup.

Reported: dedup's throughput (orders/s, without the orders-row writes), this process's peak and
current RSS (the stage keeps no state in memory), the Postgres size of dedup's state
(accepted_orders, dedup_fingerprints, review_queue, tables + indexes) against the 300 MB target,
and the latency of the suspect lookup (`seen_fingerprints`) at 10k, 100k and 1M orders.

`--fill-to M` then grows the three state tables to M orders' rows by copying the fed rows
forward in event time (not through the stage: the report labels it) and measures size and
lookups there, for when feeding M orders would take too long.

The stage's clock (`Context.now`) is each batch's simulated arrival time, so the fingerprint
retention (`ORDERHUB_DEDUP__FINGERPRINT_RETENTION_S`) prunes as it would live; with the default
7 days it prunes nothing here: 1,000,000 orders span 7 days of paid_at, and the fill is not
pruned.

The workload keeps one density whatever N is: 1,000,000 orders per 7 days of paid_at (about
1.65 orders/s), so a smaller N covers a shorter span at the same density and the window query
sees what it would see in the full run.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine, event, text

from bench.report import machine
from bench.services import Postgres, fresh_database, postgres_server
from dedup.agent import DedupStage
from dedup.process import Fingerprint, fingerprint
from dedup.projection import seen_fingerprints
from normalize.projection import write_orders
from runtime.db import in_transaction, make_engine, migrate
from runtime.runner import Context
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.events import OrderNormalized
from schemas.order import Channel, Order, OrderLine, OrderStatus, Recipient, canonical_id

log = logging.getLogger("bench.dedup_state")
RESULTS = Path(__file__).resolve().parent / "results"
SEED = 20261111
START = datetime(2026, 11, 11, tzinfo=SHANGHAI)
DENSITY = 1_000_000 / (7 * 86_400)  # orders per second of paid_at, whatever N is
CHECKPOINTS = (10_000, 100_000, 1_000_000)
TARGET_MB = 300.0
STATE_TABLES = ("accepted_orders", "dedup_fingerprints", "review_queue")
CONTEXT_TABLES = ("orders", "order_lines", "order_events")
WINDOW_INDEX = "ix_dedup_fingerprints_key_event_at"
PRUNE_INDEX = "ix_dedup_fingerprints_event_at_brin"  # the planner may use it for the window too
CENT = Decimal("0.01")

PROVINCES = ("北京市", "上海市", "天津市", "重庆市", "广东省", "浙江省", "江苏省", "山东省",
             "河南省", "河北省", "四川省", "湖北省", "湖南省", "福建省", "安徽省", "江西省",
             "陕西省", "辽宁省", "吉林省", "黑龙江省", "山西省", "云南省", "贵州省",
             "广西壮族自治区", "海南省", "甘肃省", "青海省", "内蒙古自治区", "宁夏回族自治区",
             "新疆维吾尔自治区", "西藏自治区")
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢"
            "宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程")
# Channels by share of orders; the ones that send ciphertext recipients (phone and name then
# give dedup nothing to compare) are marked True.
CHANNELS: tuple[tuple[Channel, float, bool], ...] = (
    (Channel.TAOBAO, 0.30, True), (Channel.PDD, 0.20, True), (Channel.DOUYIN, 0.15, True),
    (Channel.JD, 0.15, False), (Channel.WECHAT, 0.10, False), (Channel.SHOPIFY, 0.05, False),
    (Channel.AMAZON, 0.03, False), (Channel.CSV, 0.02, False),
)


class Workload:
    """Distinct synthetic paid orders in (almost) paid_at order; a few percent are true suspects:
    the same purchase again under another id (another channel or a re-placed order), within the
    window. Memory: the catalogue and the last few hundred orders, never the whole stream."""

    def __init__(self, seed: int, suspect_share: float = 0.03, n_skus: int = 5000) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.suspect_share = suspect_share
        self.cities = [(p, f"{p[:2]}{k:02d}市") for p in PROVINCES for k in range(1, 12)]
        self.city_weights = _zipf(len(self.cities), 0.8)
        prices = ("9.90", "19.90", "29.90", "39", "49", "59", "69", "89", "99", "129", "159",
                  "199", "299", "399", "599")
        self.catalogue = [(f"SKU-{k:05d}", Decimal(rng.choice(prices))) for k in range(n_skus)]
        self.sku_weights = _zipf(n_skus, 0.8)
        self.channels = [c for c, _, _ in CHANNELS]
        self.channel_weights = [w for _, w, _ in CHANNELS]
        self.cipher = {c for c, _, ciphertext in CHANNELS if ciphertext}
        self.recent: deque[Order] = deque(maxlen=400)
        self.serial = 0
        self.suspects = 0
        self.suspects_earlier = 0

    def stream(self, n: int, start: datetime = START) -> Iterator[OrderNormalized]:
        gap = 1 / DENSITY
        for i in range(n):
            at = start + timedelta(seconds=i * gap + self.rng.uniform(-30, 30))
            order = self._suspect(at) if self.rng.random() < self.suspect_share else None
            order = order or self.order(at)
            self.recent.append(order)
            yield OrderNormalized(order=order, delivery_id=f"bench:{order.id}",
                                  received_at=at + timedelta(seconds=self.rng.uniform(1, 20)))

    def order(self, paid_at: datetime) -> Order:
        rng = self.rng
        channel = rng.choices(self.channels, self.channel_weights)[0]
        province, city = rng.choices(self.cities, self.city_weights)[0]
        n_lines = rng.choices((1, 2, 3), (0.7, 0.22, 0.08))[0]
        picked = {sku: price for sku, price in
                  rng.choices(self.catalogue, self.sku_weights, k=n_lines)}
        lines = []
        for sku, price in picked.items():
            qty = rng.choices((1, 2, 3), (0.8, 0.15, 0.05))[0]
            total = (price * qty).quantize(CENT)
            lines.append(OrderLine(sku=sku, channel_sku_id=f"{channel.value}-{sku}",
                                   title=f"商品 {sku}", quantity=qty, unit_price=price,
                                   line_total=total))
        if channel in self.cipher:
            name = f"~{rng.getrandbits(96):024x}~"
            phone = f"${rng.getrandbits(128):032x}$"
        else:
            name = f"{rng.choice(SURNAMES)}*"
            phone = f"1{rng.randint(30, 99)}****{rng.randint(0, 9999):04d}"
        recipient = Recipient(name=name, phone=phone, country="CN", province=province,
                              city=city, district="某区", address="某路 1 号",
                              postal_code="100000")
        return self._build(channel, paid_at, tuple(lines), recipient,
                           shipping=rng.choice((Decimal(0), Decimal(0), Decimal(6), Decimal(10))),
                           discount=rng.choice((Decimal(0), Decimal(0), Decimal(3), Decimal(5),
                                                Decimal(10), Decimal(20))))

    def _suspect(self, at: datetime) -> Order | None:
        """The same purchase as a recent order, under a new id, 5–150 s after it in paid_at;
        one in ten lies *before* it in paid_at (it arrives second but is earlier in event
        time, so dedup holds the one that already went on)."""
        candidates = [o for o in self.recent
                      if o.paid_at is not None and 5 <= (at - o.paid_at).total_seconds() <= 150]
        if not candidates:
            return None
        first = self.rng.choice(candidates)
        assert first.paid_at is not None
        if self.rng.random() < 0.1:
            at = first.paid_at - timedelta(seconds=self.rng.uniform(5, 60))
            self.suspects_earlier += 1
        self.suspects += 1
        channel = self.rng.choice([c for c in self.channels if c not in self.cipher])
        return self._build(channel, at, first.lines, first.recipient,
                           shipping=first.shipping_amount, discount=first.discount_amount)

    def _build(self, channel: Channel, paid_at: datetime, lines: tuple[OrderLine, ...],
               recipient: Recipient | None, shipping: Decimal, discount: Decimal) -> Order:
        self.serial += 1
        native = f"{self.serial:09d}{self.rng.randint(0, 999):03d}"
        goods = sum((line.line_total for line in lines), Decimal(0))
        paid = max(goods + shipping - discount, CENT)
        created = paid_at - timedelta(seconds=self.rng.uniform(10, 600))
        return Order(id=canonical_id(channel, native), channel=channel, shop=f"{channel.value}-1",
                     native_id=native, native_status="paid", status=OrderStatus.PAID,
                     created_at=created, paid_at=paid_at, updated_at=paid_at, currency="CNY",
                     goods_amount=goods, shipping_amount=shipping, discount_amount=discount,
                     paid_amount=paid, paid_cny=paid, lines=lines, recipient=recipient)


def _zipf(n: int, s: float) -> list[float]:
    return [1 / (k ** s) for k in range(1, n + 1)]


# -- measurements ----------------------------------------------------------------------------


def rss_mb() -> dict[str, float]:
    """Peak (ru_maxrss, KiB on Linux) and current (VmRSS) resident set of this process, MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    current = next(int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines()
                   if ln.startswith("VmRSS:")) / 1024
    return {"peak_mb": round(peak, 1), "current_mb": round(current, 1)}


def sizes(conn: Connection) -> dict[str, Any]:
    """Bytes of each table (heap, indexes, total) and its row count."""
    out: dict[str, Any] = {}
    for table in (*STATE_TABLES, *CONTEXT_TABLES):
        row = conn.execute(text(
            "SELECT pg_relation_size(c.oid) AS heap, pg_indexes_size(c.oid) AS indexes, "
            "pg_total_relation_size(c.oid) AS total, "
            "(SELECT count(*) FROM " + table + ") AS rows "
            "FROM pg_class c WHERE c.oid = CAST(:t AS regclass)"), {"t": table}).one()
        out[table] = {"heap_mb": _mb(row.heap), "indexes_mb": _mb(row.indexes),
                      "total_mb": _mb(row.total), "rows": int(row.rows)}
    out["dedup_state_total_mb"] = round(sum(out[t]["total_mb"] for t in STATE_TABLES), 2)
    history = conn.execute(text(
        "SELECT count(*) AS n, coalesce(sum(pg_column_size(e.*)), 0) AS bytes "
        "FROM order_events e WHERE stage = 'dedup'")).one()
    out["dedup_history_rows"] = {"rows": int(history.n), "tuple_data_mb": _mb(history.bytes)}
    out["database_mb"] = _mb(conn.execute(text(
        "SELECT pg_database_size(current_database())")).scalar_one())
    return out


def _mb(n: int) -> float:
    return round(n / 2**20, 2)


def index_use(conn: Connection) -> dict[str, int]:
    row = conn.execute(text(
        "SELECT t.seq_scan, coalesce(i.idx_scan, 0) AS idx_scan, "
        "coalesce(b.idx_scan, 0) AS brin_scan FROM pg_stat_user_tables t "
        "LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid AND i.indexrelname = :ix "
        "LEFT JOIN pg_stat_user_indexes b ON b.relid = t.relid AND b.indexrelname = :brin "
        "WHERE t.relname = 'dedup_fingerprints'"), {"ix": WINDOW_INDEX, "brin": PRUNE_INDEX}
    ).one()
    return {"seq_scan": int(row.seq_scan), "idx_scan": int(row.idx_scan),
            "brin_scan": int(row.brin_scan)}


def probe_lookup(engine: Engine, stage: DedupStage, covered: tuple[datetime, datetime],
                 batch: int, probes: int, seed: int) -> dict[str, Any]:
    """`seen_fingerprints` on `probes` batches of `batch` new fingerprints, each batch placed at
    a random point of the paid_at span already stored, as the next real batch would be. Each
    lookup runs in its own transaction, rolled back."""
    work = Workload(seed)
    lo, hi = covered
    span = max((hi - lo).total_seconds() - batch / DENSITY, 0.0)

    def probe() -> list[Fingerprint]:  # built just before its lookup: one batch in memory
        start = lo + timedelta(seconds=work.rng.uniform(0, span))
        found_fps = (fingerprint(n.order) for n in work.stream(batch, start))
        return [f for f in found_fps if f is not None]

    timings: list[float] = []
    found: list[int] = []
    with engine.connect() as conn:
        for table in STATE_TABLES:  # what autovacuum would have done by now
            conn.execute(text(f"ANALYZE {table}"))
        conn.commit()
        before = _flushed_index_use(conn)
        for _ in range(probes):
            fps = probe()
            t0 = time.perf_counter()
            seen, _reviewed = seen_fingerprints(conn, fps, stage.window)
            timings.append(time.perf_counter() - t0)
            conn.rollback()
            found.append(len(seen))
        after = _flushed_index_use(conn)
    timings.sort()
    return {
        "probes": probes, "batch": batch,
        "p50_ms": round(1000 * statistics.median(timings), 2),
        "p99_ms": round(1000 * _quantile(timings, 0.99), 2),
        "max_ms": round(1000 * timings[-1], 2),
        "mean_rows_returned": round(statistics.fmean(found), 1),
        "index_scans": after["idx_scan"] - before["idx_scan"],
        "seq_scans": after["seq_scan"] - before["seq_scan"],
        "brin_scans": after["brin_scan"] - before["brin_scan"],
    }


def _flushed_index_use(conn: Connection) -> dict[str, int]:
    """Index and sequential scan counters, after this backend's pending stats are flushed."""
    conn.rollback()
    try:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))  # Postgres 15+
    except Exception:  # older server: counters arrive within its stats interval
        conn.rollback()
    conn.commit()
    time.sleep(1.1)
    use = index_use(conn)
    conn.rollback()
    return use


def _quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, server: Postgres, url: str) -> dict[str, Any]:
    settings = Settings()
    migrate(url)
    engine = make_engine(url, pool_size=2)
    stage = DedupStage(settings.dedup, CollectorRegistry())
    work = Workload(SEED, suspect_share=args.suspects)
    checkpoints = sorted({c for c in CHECKPOINTS if c < args.orders} | {args.orders})
    clock = StatementClock(engine)
    rss_start = rss_mb()
    totals: dict[str, float] = dict.fromkeys(
        ("generate", "orders_rows", "prepare", "project"), 0.0)
    emits = Counter[str]()
    batch_s: list[float] = []
    points: list[dict[str, Any]] = []
    first_at: datetime | None = None
    last_at: datetime | None = None
    done = 0
    stopped = None
    wall0 = time.perf_counter()
    stream = work.stream(args.orders)
    try:
        while done < args.orders:
            t0 = time.perf_counter()
            batch = [n for _, n in zip(range(args.batch), stream, strict=False)]
            t1 = time.perf_counter()
            in_transaction(engine, _writer(batch))
            t2 = time.perf_counter()
            # The stage's clock is the batch's (simulated) arrival time, not this machine's:
            # the fingerprint retention prunes against it, as it would in a live run.
            ctx = Context(now=max(n.received_at for n in batch), settings=settings)
            items = [stage.prepare(n, ctx) for n in batch]
            t3 = time.perf_counter()
            clock.on = True
            out = in_transaction(engine, lambda c, items=items, ctx=ctx:  # type: ignore[misc]
                                 stage.project(c, items, ctx))
            t4 = time.perf_counter()
            clock.on = False
            for k, dt in (("generate", t1 - t0), ("orders_rows", t2 - t1),
                          ("prepare", t3 - t2), ("project", t4 - t3)):
                totals[k] += dt
            batch_s.append(t4 - t2)
            for e in out:
                emits[e.topic.name] += 1
            done += len(batch)
            times = [n.order.paid_at for n in batch if n.order.paid_at is not None]
            first_at = min(times) if first_at is None else min(first_at, *times)
            last_at = max(times) if last_at is None else max(last_at, *times)
            if done >= checkpoints[0]:
                checkpoints.pop(0)
                points.append(_checkpoint(engine, stage, args, done, (first_at, last_at),
                                          time.perf_counter() - wall0))
                log.info("checkpoint %s", json.dumps(points[-1]))
            elif done % 50_000 < args.batch:
                log.info("%d orders, %.0f s, dedup %.0f orders/s, rss %s", done,
                         time.perf_counter() - wall0,
                         done / (totals["prepare"] + totals["project"]), rss_mb())
            if args.time_limit and time.perf_counter() - wall0 > args.time_limit and checkpoints:
                stopped = f"time limit {args.time_limit:.0f} s reached after {done} orders"
                log.warning("%s", stopped)
                if not points or points[-1]["orders"] != done:
                    points.append(_checkpoint(engine, stage, args, done, (first_at, last_at),
                                              time.perf_counter() - wall0))
                break
        filled: dict[str, Any] | None = None
        if args.fill_to > done and first_at is not None and last_at is not None:
            t0 = time.perf_counter()
            covered = fill(engine, args.fill_to, done, (first_at, last_at))
            filled = _checkpoint(engine, stage, args, args.fill_to, covered,
                                 time.perf_counter() - wall0)
            filled.update(fill_s=round(time.perf_counter() - t0, 1), rss=None)
            log.info("filled checkpoint %s", json.dumps(filled))
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version()")).scalar_one()
    finally:
        engine.dispose()
    dedup_s = totals["prepare"] + totals["project"]
    batch_s.sort()
    final = points[-1]
    return {
        "orders_requested": args.orders, "orders": done, "batch": args.batch,
        "stopped": stopped,
        "wall_s": round(time.perf_counter() - wall0, 1),
        "postgres": {"server": server.origin, "version": version},
        "workload": {
            "density_orders_per_s": round(DENSITY, 3),
            "paid_at_span_h": round(((last_at or START) - (first_at or START))
                                    .total_seconds() / 3600, 2),
            "true_suspects_injected": work.suspects,
            "of_which_earlier_in_event_time": work.suspects_earlier,
            "suspect_share": args.suspects,
            "window_s": settings.dedup.window_s,
            "fingerprint_retention_s": settings.dedup.fingerprint_retention_s,
            "prune_every_batches": settings.dedup.prune_every_batches,
        },
        "throughput": {
            "dedup_orders_per_s": round(done / dedup_s, 1),
            "project_only_orders_per_s": round(done / totals["project"], 1),
            "orders_rows_per_s": round(done / totals["orders_rows"], 1),
            "seconds": {k: round(v, 2) for k, v in totals.items()},
            "dedup_batch_ms": {"p50": round(1000 * statistics.median(batch_s), 1),
                               "p99": round(1000 * _quantile(batch_s, 0.99), 1)},
        },
        "emits": dict(emits),
        "rss": {"at_start": rss_start, "at_end": rss_mb()},
        "checkpoints": points,
        "filled": filled,
        "statements_in_project": clock.top(done),
        "state_mb": final["sizes"]["dedup_state_total_mb"],
        "target_mb": TARGET_MB,
    }


class StatementClock:
    """Time spent per SQL statement (by its first words) while `on`: where dedup's time goes."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        self.seconds: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self._t0 = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._t0 = time.perf_counter()

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.on:
            what = " ".join(statement.split())[:72]
            self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - self._t0
            self.calls[what] += 1

    def top(self, orders: int, n: int = 12) -> list[dict[str, Any]]:
        return [{"statement": what, "calls_per_batch_of_500": round(self.calls[what] * 500
                                                                    / orders, 1),
                 "seconds": round(secs, 2), "ms_per_order": round(1000 * secs / orders, 3)}
                for what, secs in sorted(self.seconds.items(), key=lambda i: -i[1])[:n]]


def fill(engine: Engine, target: int, real: int, covered: tuple[datetime, datetime]
         ) -> tuple[datetime, datetime]:
    """Grow dedup's three tables to `target` orders by copying the rows the real run wrote,
    shifted forward in event time by whole spans (ids get a `~k` suffix, 2–3 bytes longer than
    real ones). Not the stage's path: it shows what `target` rows cost in size and lookups."""
    lo, hi = covered
    shift = (hi - lo).total_seconds() + 1 / DENSITY
    have, k = real, 0
    while have < target:
        k += 1
        take = min(real, target - have)
        with engine.begin() as conn:
            conn.execute(text(
                "CREATE TEMP TABLE pick ON COMMIT DROP AS SELECT order_id FROM dedup_fingerprints "
                "WHERE order_id NOT LIKE '%~%' ORDER BY event_at LIMIT :take"), {"take": take})
            p = {"sfx": f"~{k}", "shift": shift * k}
            conn.execute(text(
                "INSERT INTO accepted_orders (order_id, first_digest, first_delivery, "
                "accepted_at) SELECT a.order_id || :sfx, a.first_digest, a.first_delivery, "
                "a.accepted_at + make_interval(secs => :shift) FROM accepted_orders a "
                "JOIN pick USING (order_id)"), p)
            conn.execute(text(
                "INSERT INTO dedup_fingerprints (order_id, key, event_at, paid_cny, phone_tail, "
                "name_mark, channel) SELECT f.order_id || :sfx, f.key, "
                "f.event_at + make_interval(secs => :shift), f.paid_cny, f.phone_tail, "
                "f.name_mark, f.channel "
                "FROM dedup_fingerprints f JOIN pick USING (order_id) ORDER BY f.event_at"), p)
            conn.execute(text(
                "INSERT INTO review_queue (order_id, matched_order_id, matched_fields, reason, "
                "state, raised_at) SELECT r.order_id || :sfx, r.matched_order_id || :sfx, "
                "r.matched_fields, r.reason, r.state, r.raised_at + make_interval(secs => :shift) "
                "FROM review_queue r JOIN pick USING (order_id)"), p)
        have += take
        log.info("filled to %d orders' rows", have)
    return lo, lo + timedelta(seconds=shift * k) + (hi - lo)


def _writer(batch: list[OrderNormalized]) -> Callable[[Connection], None]:
    return lambda conn: write_orders(conn, batch)


def _checkpoint(engine: Engine, stage: DedupStage, args: argparse.Namespace, done: int,
                covered: tuple[datetime, datetime], wall: float) -> dict[str, Any]:
    rss = rss_mb()  # before the probes allocate anything
    with engine.connect() as conn:
        size = sizes(conn)
    return {"orders": done, "wall_s": round(wall, 1), "rss": rss, "sizes": size,
            "lookup": probe_lookup(engine, stage, covered, args.batch, args.probes, SEED + done)}


# -- report ----------------------------------------------------------------------------------


def report(r: dict[str, Any]) -> str:
    n = r["orders"]
    t = r["throughput"]
    final = r["checkpoints"][-1]
    s = final["sizes"]
    rows: list[tuple[str, str, str]] = [
        (f"orders fed through dedup ({r['batch']} per batch)", f"{n:,}", "orders"),
        ("dedup throughput (prepare + project, one tx per batch)",
         f"{t['dedup_orders_per_s']:,.0f}", "orders/s"),
        ("  of which project alone", f"{t['project_only_orders_per_s']:,.0f}", "orders/s"),
        ("dedup batch time p50 / p99",
         f"{t['dedup_batch_ms']['p50']:.0f} / {t['dedup_batch_ms']['p99']:.0f}", "ms"),
        ("orders rows written by write_orders (not counted)",
         f"{t['orders_rows_per_s']:,.0f}", "orders/s"),
        ("process RSS at start (after imports)", f"{r['rss']['at_start']['current_mb']:.0f}",
         "MB"),
    ]
    for p in r["checkpoints"]:
        rows.append((f"process RSS after {p['orders']:,} orders (current / peak)",
                     f"{p['rss']['current_mb']:.0f} / {p['rss']['peak_mb']:.0f}", "MB"))
    for table in STATE_TABLES:
        rows.append((f"{table} ({s[table]['rows']:,} rows) heap + indexes",
                     f"{s[table]['heap_mb']:.1f} + {s[table]['indexes_mb']:.1f}", "MB"))
    rows.append((f"dedup state after {n:,} orders (target ≤ {TARGET_MB:.0f})",
                 f"{s['dedup_state_total_mb']:.1f}", "MB"))
    if n < 1_000_000:
        per = s["dedup_state_total_mb"] / n * 1_000_000
        rows.append(("  EXTRAPOLATED linearly to 1,000,000 orders", f"{per:.0f}", "MB"))
    for table in CONTEXT_TABLES:
        rows.append((f"(context) {table}, {s[table]['rows']:,} rows, total",
                     f"{s[table]['total_mb']:.1f}", "MB"))
    filled = r.get("filled")
    if filled:
        fs = filled["sizes"]
        rows.append((f"dedup state FILLED to {filled['orders']:,} orders (copied rows, not fed)",
                     f"{fs['dedup_state_total_mb']:.1f}", "MB"))
        for table in STATE_TABLES:
            rows.append((f"  {table} ({fs[table]['rows']:,} rows) heap + indexes",
                         f"{fs[table]['heap_mb']:.1f} + {fs[table]['indexes_mb']:.1f}", "MB"))
    for p in [*r["checkpoints"], *([filled] if filled else [])]:
        lk = p["lookup"]
        used = [name for name, n in (("index", lk["index_scans"]), ("seq scan", lk["seq_scans"]),
                                     ("BRIN", lk.get("brin_scans", 0))) if n]
        plan = " + ".join(used) or "none counted"
        label = "filled " if p is filled else ""
        rows.append((f"seen_fingerprints at {p['orders']:,} {label}rows, p50 / p99 "
                     f"({lk['probes']} × {lk['batch']}, ~{lk['mean_rows_returned']:.0f} found, "
                     f"{plan})", f"{lk['p50_ms']:.1f} / {lk['p99_ms']:.1f}", "ms"))
    width = max(len(a) for a, _, _ in rows)
    lines = [f"| {'figure':<{width}} | {'value':>13} | unit     |",
             f"|{'-' * (width + 2)}|{'-' * 14}:|----------|"]
    lines += [f"| {a:<{width}} | {b:>13} | {c:<8} |" for a, b, c in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.dedup_state", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=1_000_000, help="distinct orders to feed")
    p.add_argument("--batch", type=int, default=500, help="orders per dedup transaction")
    p.add_argument("--probes", type=int, default=200,
                   help="seen_fingerprints lookups timed at each checkpoint")
    p.add_argument("--suspects", type=float, default=0.03,
                   help="share of orders that repeat a recent purchase under a new id")
    p.add_argument("--fill-to", type=int, default=0,
                   help="afterwards, copy the state rows forward in time up to this many orders "
                        "and measure size and lookups there (labelled as filled, not fed)")
    p.add_argument("--time-limit", type=float, default=0.0,
                   help="stop feeding after this many seconds (0: none); the report says so")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"bench_dedup_state_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="orderhub-bench-") as scratch, \
            postgres_server(Path(scratch)) as server, fresh_database(server, name) as url:
        log.info("database %s on %s (%s)", name, server.origin, server.version)
        results = run(args, server, url)
    results = {"date": stamp, "machine": machine(), "command": " ".join(sys.argv), **results}
    print(report(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"dedup-state-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    log.info("results written to %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
