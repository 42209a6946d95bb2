"""`python -m bench.allocate_batch [--orders N] [--batch 500]`: allocate's projection alone, the
bulk path against the per-order path, in one run.

No broker. N demo orders (bench.workload.demo_orders) are normalized and written as `orders` rows
the way normalize leaves them (not timed); the stock is the demo warehouse (plus `--warehouses`
more) with `--stock` times the units the orders need, spread over the warehouses. Then
`AllocateStage.project` gets the orders as OrderAccepted in batches of `--batch`, one transaction
each (`runtime.db.in_transaction`, as the runner does): once per-order (`batched=False`, the path
before issue 9) and once in bulk, each in its own fresh database on the local Postgres. The two
alternate batch by batch with the same `Context.now`, so both see the same load when others
share the machine.

Both runs must emit the same messages in the same order and leave the same orders, allocations,
decisions, history and stock, or the benchmark fails. Reported: orders/s of each path through
`project` alone and through the whole transaction (with the commit), their ratio, and SQL
statements per batch (an executemany counts once).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine, event, text

from allocate import geo
from allocate.agent import AllocateStage
from allocate.projection import add_warehouse, set_stock
from bench.report import machine
from bench.services import Postgres, fresh_database, postgres_server
from bench.workload import Orders, demo_orders, envelope
from ingest.demo import demo_warehouse, required_stock
from normalize.process import normalize
from normalize.projection import write_orders
from normalize.rates import RateTable
from runtime.db import in_transaction, make_engine, migrate
from runtime.runner import Context, Emit
from runtime.settings import Settings
from schemas.events import OrderAccepted, OrderNormalized

log = logging.getLogger("bench.allocate_batch")
RESULTS = Path(__file__).resolve().parent / "results"
MORE_WAREHOUSES = (("WH-SH", "上海市", "上海市"), ("WH-BJ", "北京市", "北京市"),
                   ("WH-GZ", "广东省", "广州市"), ("WH-CD", "四川省", "成都市"))
# What both runs must leave the same (timestamps set by now() at commit differ, so left out).
STATE = {
    "orders": "SELECT id, status, status_at, hold FROM orders ORDER BY id",
    "allocations": "SELECT order_id, line_no, warehouse, sku, quantity, rule, reason, "
                   "reserved_at FROM allocations ORDER BY order_id, line_no, warehouse",
    "decisions": "SELECT order_id, rule, reason, candidates, decided_at "
                 "FROM allocation_decisions ORDER BY order_id",
    "history": "SELECT order_id, event_key, kind, status, occurred_at, data FROM order_events "
               "WHERE stage = 'allocate' ORDER BY id",
    "stock": "SELECT warehouse, sku, on_hand, reserved, available, low FROM stock "
             "ORDER BY warehouse, sku",
    "approvals": "SELECT order_id, paid_cny, reasons FROM approvals ORDER BY order_id",
}


@dataclass
class Timing:
    """One path's figures over every batch."""

    path: str
    project_s: float = 0.0
    transaction_s: float = 0.0
    statements: int = 0
    batches: int = 0

    def as_dict(self, orders: int) -> dict[str, Any]:
        return {"path": self.path, "project_s": round(self.project_s, 3),
                "transaction_s": round(self.transaction_s, 3),
                "project_orders_per_s": round(orders / self.project_s, 1),
                "transaction_orders_per_s": round(orders / self.transaction_s, 1),
                "statements_per_batch": round(self.statements / self.batches, 1)}


def accepted_orders(orders: Orders, settings: Settings) -> list[OrderNormalized]:
    """The demo payloads as normalize maps them."""
    rates = RateTable.from_mapping(settings.rates)
    received = datetime.now(UTC)
    normalized = []
    for shop, payload in orders:
        order = normalize(envelope(shop, payload, received), rates)
        normalized.append(OrderNormalized(order=order, delivery_id=f"bench:{order.id}",
                                          received_at=received))
    return normalized


def prepare(url: str, normalized: Sequence[OrderNormalized], orders: Orders,
            stock_factor: float, extra_warehouses: int) -> None:
    """Schema, the orders rows as normalize leaves them, warehouses and stock."""
    migrate(url)
    engine = make_engine(url)
    try:
        for start in range(0, len(normalized), 500):
            in_transaction(engine, partial(write_orders, batch=normalized[start:start + 500]))
        in_transaction(engine, lambda conn: _stock(conn, orders, stock_factor, extra_warehouses))
    finally:
        engine.dispose()


def _stock(conn: Connection, orders: Orders, factor: float, extra: int) -> None:
    home = demo_warehouse()
    warehouses = [(home.code, home.province, home.city), *MORE_WAREHOUSES[:extra]]
    for i, (code, province, city) in enumerate(warehouses):
        add_warehouse(conn, code, code, province, city, 10 + i)
    for sku, qty in required_stock(orders).items():
        total = int(qty * factor)
        for i, (code, _, _) in enumerate(warehouses):
            share = total // len(warehouses) + (1 if i < total % len(warehouses) else 0)
            set_stock(conn, code, sku, share)


class Runner:
    """One path on its own database: `AllocateStage` with `batched` set, counted and timed."""

    def __init__(self, engine: Engine, settings: Settings, batched: bool) -> None:
        self.engine = engine
        self.stage = AllocateStage(settings.allocate, CollectorRegistry(), batched=batched)
        self.timing = Timing("bulk" if batched else "per-order")
        self.emits: list[tuple[str, str, str]] = []  # topic, key, value as JSON
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args: Any) -> None:
        self.timing.statements += 1

    def stop_counting(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)

    def batch(self, items: Sequence[OrderAccepted], ctx: Context) -> None:
        """`project` over the items in one transaction, as the runner calls it."""
        spent: list[float] = []

        def work(conn: Connection) -> list[Emit]:
            began = time.perf_counter()
            out = self.stage.project(conn, items, ctx)
            spent.append(time.perf_counter() - began)
            return out

        began = time.perf_counter()
        emits = in_transaction(self.engine, work)
        self.timing.transaction_s += time.perf_counter() - began
        # Kept as text, which the garbage collector does not walk: 5,000 emits held as models
        # would make every collection in the timed code slower than in a worker.
        self.emits += [(e.topic.name, e.key, e.value.model_dump_json()) for e in emits]
        self.timing.project_s += spent[-1]
        self.timing.batches += 1


def state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(text(sql))] for name, sql in STATE.items()}


def compare(a: list[tuple[str, str, str]], b: list[tuple[str, str, str]],
            state_a: dict[str, Any], state_b: dict[str, Any]) -> None:
    """Fail loudly when the two paths did not do the same thing."""
    if len(a) != len(b):
        raise AssertionError(f"the paths emitted {len(a)} and {len(b)} messages")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            raise AssertionError(f"emit #{i} differs: {x} != {y}")
    for name in STATE:
        if state_a[name] != state_b[name]:
            raise AssertionError(f"the paths left different {name}")


def run(args: argparse.Namespace, server: Postgres) -> dict[str, Any]:
    settings = Settings()
    orders = demo_orders(args.orders)
    normalized = accepted_orders(orders, settings)
    accepted = [OrderAccepted(order=n.order, reason="unique") for n in normalized]
    geo.locate("CN", "浙江省", "杭州市")  # load the gazetteer before anything is timed
    tag = secrets.token_hex(4)
    with ExitStack() as stack:
        runners = []
        for batched in (False, True):
            url = stack.enter_context(fresh_database(
                server, f"bench_allocate_{'bulk' if batched else 'order'}_{tag}"))
            prepare(url, normalized, orders, args.stock, args.warehouses)
            engine = make_engine(url)
            stack.callback(engine.dispose)
            runners.append(Runner(engine, settings, batched))
        old, new = runners
        # A worker holds one batch, not all N orders: keep the inputs out of the collector's
        # way, or each collection in the timed code walks every one of them.
        gc.collect()
        gc.freeze()
        log.info("%d orders in batches of %d, each batch per-order then in bulk",
                 len(accepted), args.batch)
        start = datetime.now(UTC)
        for n, first in enumerate(range(0, len(accepted), args.batch)):
            ctx = Context(now=start + timedelta(seconds=n), settings=settings)
            for runner in runners:  # alternating: both see the same load on a shared machine
                runner.batch(accepted[first:first + args.batch], ctx)
        for runner in runners:
            runner.stop_counting()
        compare(old.emits, new.emits, state(old.engine), state(new.engine))
    topics: dict[str, int] = {}
    for topic, _, _ in new.emits:
        topics[topic] = topics.get(topic, 0) + 1
    return {
        "orders": len(accepted), "batch": args.batch, "stock_factor": args.stock,
        "warehouses": 1 + args.warehouses, "emits": topics,
        "per_order": old.timing.as_dict(len(accepted)), "bulk": new.timing.as_dict(len(accepted)),
        "ratio_project": round(old.timing.project_s / new.timing.project_s, 2),
        "ratio_transaction": round(old.timing.transaction_s / new.timing.transaction_s, 2),
        "postgres": f"{server.origin} ({server.version})",
    }


def report(r: dict[str, Any]) -> str:
    lines = [f"allocate projection, {r['orders']:,} orders in batches of {r['batch']}, "
             f"{r['warehouses']} warehouse(s), stock x{r['stock_factor']}, "
             f"Postgres {r['postgres']}; emits {r['emits']} (identical on both paths)",
             "| path      | project orders/s | transaction orders/s | statements/batch |",
             "|-----------|-----------------:|---------------------:|-----------------:|"]
    for key in ("per_order", "bulk"):
        t = r[key]
        lines.append(f"| {t['path']:<9} | {t['project_orders_per_s']:>16,.0f} | "
                     f"{t['transaction_orders_per_s']:>20,.0f} | "
                     f"{t['statements_per_batch']:>16,.1f} |")
    lines.append(f"bulk / per-order: {r['ratio_project']:.2f}x in project, "
                 f"{r['ratio_transaction']:.2f}x per transaction")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.allocate_batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=5000, help="demo orders to allocate")
    p.add_argument("--batch", type=int, default=500, help="orders per transaction")
    p.add_argument("--stock", type=float, default=2.0,
                   help="units in stock per unit the orders need (below 1: some backorder)")
    p.add_argument("--warehouses", type=int, default=0, choices=range(len(MORE_WAREHOUSES) + 1),
                   help="warehouses besides the demo one; the stock is spread over all")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="orderhub-bench-") as scratch, \
            postgres_server(Path(scratch)) as server:
        results = run(args, server)
    results = {"date": stamp, "machine": machine(), "command": " ".join(sys.argv), **results}
    print(report(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"allocate-batch-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    log.info("results written to %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
