"""`python -m bench.kpi [--orders N]`: one KPI refresh on a projection of N orders, without and
with the time-range indexes of migration 0008, and what those indexes cost an insert.

One database, filled once with N orders over `--days` (one allocation line each; shipped,
delivered and completed ones shipped; orders older than two days finished) at schema 0007. Then,
at 0007 with the same-day query as it was before (BEFORE_SAME_DAY), and again after upgrading to
0008 (and ANALYZE) with runtime.kpi as it is:
- **refresh**: `runtime.kpi.read_kpis`, the KPI collector's and `orderhub status`'s one
  transaction, `--reads` times; the median and the worst;
- **insert**: `--insert` more orders in one `INSERT … SELECT`, the way normalize writes a batch,
  timed and then deleted again, `--reads` times; the median.
The refresh at 0007 is the baseline: the ratio is measured in the same run on the same rows.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

from alembic import command
from sqlalchemy import Engine, text

from bench.harness import RESULTS
from bench.report import machine, write_results
from bench.services import fresh_database, postgres_server
from runtime import kpi
from runtime.db import alembic_config, in_transaction, make_engine
from runtime.kpi import read_kpis
from runtime.settings import KpiSettings
from schemas.base import SHANGHAI

log = logging.getLogger("bench.kpi")
BEFORE, AFTER = "0007", "0008"
BEFORE_SAME_DAY = """
WITH due AS (SELECT id, status FROM orders WHERE paid_at >= :df AND paid_at < :dt),
     lines AS (SELECT a.order_id, bool_and(a.shipped_at IS NOT NULL) AS all_shipped
               FROM allocations a JOIN due ON due.id = a.order_id GROUP BY a.order_id),
     d AS (SELECT due.status, COALESCE(lines.all_shipped, due.status = ANY(:past)) AS shipped
           FROM due LEFT JOIN lines ON lines.order_id = due.id)
SELECT count(*) FILTER (WHERE shipped OR NOT (status = ANY(:not_due))),
       count(*) FILTER (WHERE shipped)
FROM d"""
"""runtime.kpi._SAME_DAY before it read each due order's lines by key: the planner hashed every
allocation to join them."""
# Orders older than two days are finished; younger ones are spread over every status (weights
# out of 100), so pending and held orders are about two days' worth, as in a running shop.
FINISHED = (("completed", 80), ("delivered", 10), ("cancelled", 5), ("returned", 3),
            ("duplicate", 2))
MOVING = (("completed", 20), ("delivered", 15), ("shipped", 25), ("allocated", 20), ("paid", 5),
          ("backordered", 4), ("approval_hold", 2), ("review_hold", 1), ("cancelled", 4),
          ("returned", 2), ("duplicate", 2))

FILL = """
WITH o AS (
INSERT INTO orders (id, channel, shop, native_id, native_status, status, status_at, created_at,
                    paid_at, updated_at, currency, paid_amount, paid_cny, document, hold)
SELECT :prefix || g, (ARRAY['taobao','jd','pdd','douyin','wechat','shopify'])[1 + g % 6],
       'shop', :prefix || g, 'x', s.status, t.at, t.at, t.at + interval '3 minutes', t.at,
       'CNY', 99, 99, '{"lines": 1}',
       CASE WHEN s.status IN ('approval_hold', 'review_hold', 'backordered')
            THEN '{"reason": "out_of_stock"}'::jsonb END
FROM generate_series(1, :n) AS g
CROSS JOIN LATERAL (SELECT :start - (g::float / :n) * :days * interval '1 day' AS at) AS t
CROSS JOIN LATERAL (SELECT STATUS_CASE AS status) AS s
RETURNING id, status, created_at)
INSERT INTO allocations (order_id, line_no, warehouse, sku, quantity, rule, reason,
                         reserved_at, shipped_at)
SELECT id, 1, 'WH-HZ', 'SKU-' || (length(id) % 12), 1, 'nearest', 'bench', created_at,
       CASE WHEN status IN ('shipped', 'delivered', 'completed', 'returned')
            THEN created_at + interval '20 hours' END
FROM o WHERE status NOT IN ('paid', 'backordered', 'review_hold', 'cancelled', 'duplicate')"""


def _status_case() -> str:
    """A status for order g by its age (constants of this module, not input)."""
    def spread(weights: tuple[tuple[str, int], ...]) -> str:
        arms, upto = [], 0
        for status, weight in weights:
            upto += weight
            arms.append(f"WHEN (g::bigint * 7919) % 100 < {upto} THEN '{status}'")
        return f"CASE {' '.join(arms)} END"

    return f"CASE WHEN t.at < :start - interval '2 days' THEN {spread(FINISHED)} " \
           f"ELSE {spread(MOVING)} END"


def fill(engine: Engine, prefix: str, n: int, days: float, start: datetime) -> None:
    def work(conn: Any) -> None:
        conn.execute(text(FILL.replace("STATUS_CASE", _status_case())),
                     {"prefix": prefix, "n": n, "days": days, "start": start})

    in_transaction(engine, work)


def timed(reads: int, work: Callable[[], None]) -> list[float]:
    took = []
    for _ in range(reads):
        started = time.perf_counter()
        work()
        took.append(time.perf_counter() - started)
    return took


def measure(engine: Engine, args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    settings = KpiSettings()
    kpis = read_kpis(engine, now, settings)

    def refresh_once() -> None:
        read_kpis(engine, now, settings)

    refresh = timed(args.reads, refresh_once)

    def insert_and_drop() -> None:
        fill(engine, "INS", args.insert, 1.0, now)
        in_transaction(engine, lambda c: (  # by key range: the primary keys serve it
            c.execute(text("DELETE FROM allocations WHERE order_id >= 'INS' AND order_id < 'INT'")),
            c.execute(text("DELETE FROM orders WHERE id >= 'INS' AND id < 'INT'"))))

    insert = timed(args.reads, insert_and_drop)
    return {"refresh_ms": [round(1000 * s, 1) for s in refresh],
            "refresh_median_ms": 1000 * statistics.median(refresh),
            "refresh_max_ms": 1000 * max(refresh),
            "insert_median_ms": 1000 * statistics.median(insert),
            "kpis": {"today": sum(kpis.orders_today.values()), "due": kpis.due,
                     "pending": sum(kpis.pending.values()), "cycle_n": len(kpis.cycle_hours)}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(SHANGHAI)
    with tempfile.TemporaryDirectory() as scratch, postgres_server(Path(scratch)) as server, \
            fresh_database(server, f"bench_kpi_{int(time.time())}") as url:
        command.upgrade(alembic_config(url), BEFORE)
        engine = make_engine(url)
        try:
            in_transaction(engine, lambda c: c.execute(text(
                "INSERT INTO warehouses (code, name, province, city, priority) "
                "VALUES ('WH-HZ', '杭州仓', '浙江省', '杭州市', 10)")))
            log.info("filling %d orders over %g days", args.orders, args.days)
            started = time.perf_counter()
            fill(engine, "O", args.orders, args.days, now)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
            log.info("filled in %.0f s; reading at %s", time.perf_counter() - started, BEFORE)
            with patch.object(kpi, "_SAME_DAY", BEFORE_SAME_DAY):
                before = measure(engine, args, now)
            command.upgrade(alembic_config(url), AFTER)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
            log.info("reading at %s", AFTER)
            after = measure(engine, args, now)
            if before["kpis"] != after["kpis"]:
                raise SystemExit(f"the KPIs differ: {before['kpis']} against {after['kpis']}")
        finally:
            engine.dispose()
        return {"command": " ".join(["python -m bench.kpi", *sys.argv[1:]]),
                "date": datetime.now(UTC).isoformat(), "machine": machine(),
                "postgres": {"origin": server.origin, "version": server.version},
                "orders": args.orders, "days": args.days, "reads": args.reads,
                "insert_orders": args.insert, BEFORE: before, AFTER: after}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kpi", description=__doc__)
    p.add_argument("--orders", type=int, default=1_000_000)
    p.add_argument("--days", type=float, default=90.0, help="the orders' span (default 90)")
    p.add_argument("--reads", type=int, default=15, help="timed refreshes and inserts each")
    p.add_argument("--insert", type=int, default=500, help="orders per timed insert")
    args = p.parse_args(argv)
    if args.orders < 1 or args.reads < 1 or args.insert < 1 or args.days <= 0:
        p.error("--orders, --reads, --insert and --days must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run(args)
    b, a = results[BEFORE], results[AFTER]
    print(f"| {args.orders:,} orders over {args.days:g} days "
          f"| before: no indexes ({BEFORE}), old same-day query "
          f"| after: indexes ({AFTER}), same-day by key | ratio |")
    print("|---|---:|---:|---:|")
    for label, key in (("KPI refresh, median ms", "refresh_median_ms"),
                       ("KPI refresh, worst ms", "refresh_max_ms"),
                       (f"insert {args.insert} orders (+ their lines), median ms",
                        "insert_median_ms")):
        print(f"| {label} | {b[key]:,.1f} | {a[key]:,.1f} | {a[key] / b[key]:.2f} |")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log.info("results written to %s", write_results(RESULTS, f"kpi-{stamp}", results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
