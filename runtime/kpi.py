"""Business KPIs computed from the projection, and the collector process that serves them.

Definitions (docs/kpis.md says the same for merchants); every day is a GMT+8 calendar day:

- pending orders by status: orders now in a status not yet shipped or finished (PENDING);
- anomaly ratio: (orders of the window now on a hold — review_hold, approval_hold, backordered —
  plus dead letters of the window not replayed) / (orders of the window + those dead letters);
- same-day ship rate: of the orders due today — paid in [yesterday's cutoff, today's cutoff),
  cutoff 16:00 by default — the share already shipped; an order cancelled, refunded or marked a
  duplicate without shipping is not due; with nothing due the rate is 1 (nothing is late);
- fulfillment cycle: hours from paid_at to carrier pickup (the last shipment's shipped_at) of
  every order whose last shipment was picked up today; a histogram that restarts at midnight;
- duplicate ratio: orders of the window marked `duplicate` or with an open review item (a
  suspected duplicate nobody has decided yet) / orders of the window;
- holds by reason, low-stock SKUs (available below safety stock anywhere), dead letters by stage
  (not replayed): the current state, whatever the window;
- orders today by channel: orders created today, duplicates excluded.

The window of the ratios (ORDERHUB_KPI__WINDOW) is `today` (created since GMT+8 midnight, the
default) or `24h` (created in the last 24 hours). An order is "shipped" when every allocated line
has a shipped_at, or when it has no allocation and its status is past shipment.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, get_args

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from runtime.db import is_transient, make_engine
from runtime.health import serve_metrics
from runtime.services import Endpoints
from runtime.settings import KpiSettings, Settings
from schemas.base import SHANGHAI
from schemas.errors import TransientError
from schemas.events import Hold
from schemas.order import Channel, OrderStatus

log = logging.getLogger(__name__)

S = OrderStatus
PENDING = (S.PENDING_PAYMENT, S.PAID, S.REVIEW_HOLD, S.APPROVAL_HOLD, S.BACKORDERED, S.ALLOCATED)
HELD = (S.REVIEW_HOLD, S.APPROVAL_HOLD, S.BACKORDERED)
NOT_DUE = (S.CANCELLED, S.REFUNDED, S.DUPLICATE)
PAST_SHIPMENT = (S.SHIPPED, S.DELIVERED, S.COMPLETED, S.RETURN_REQUESTED, S.RETURNED)
HOLD_REASONS: tuple[str, ...] = get_args(Hold.model_fields["reason"].annotation)
# Where dead letters come from: ingest and the stages of runtime/stages.py (not imported: this
# process needs no faust; tests/e2e/test_prometheus.py checks the two agree).
DLQ_STAGES = ("ingest", "normalize", "dedup", "allocate", "notify")
CYCLE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 36.0, 48.0, 72.0, 120.0, 168.0)
PREFIX = "orderhub_kpi_"
METRIC_NAMES = (  # the contract with deploy/grafana: spelled out, so a grep finds them
    "orderhub_kpi_pending_orders",
    "orderhub_kpi_anomaly_ratio",
    "orderhub_kpi_same_day_ship_ratio",
    "orderhub_kpi_fulfillment_cycle_hours",
    "orderhub_kpi_duplicate_ratio",
    "orderhub_kpi_holds",
    "orderhub_kpi_low_stock_skus",
    "orderhub_kpi_orders_today",
    "orderhub_kpi_dead_letters",
    "orderhub_kpi_refresh_seconds",
    "orderhub_kpi_refreshed_timestamp_seconds",
)


@dataclass(frozen=True)
class Bounds:
    """The periods the KPIs count in, for one moment `now` (all GMT+8)."""

    now: datetime
    day_start: datetime
    day_end: datetime
    window_start: datetime
    window_end: datetime
    due_from: datetime
    due_until: datetime


def bounds(now: datetime, settings: KpiSettings) -> Bounds:
    """Today (midnight to midnight GMT+8), the ratios' window, and today's shipping cut."""
    local = now.astimezone(SHANGHAI)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    day_end = day_start + timedelta(days=1)  # China keeps no daylight saving time
    window = (day_start, day_end) if settings.window == "today" else (
        local - timedelta(hours=24), local)
    cutoff = datetime.combine(day_start.date(), settings.ship_cutoff, tzinfo=SHANGHAI)
    return Bounds(local, day_start, day_end, *window, cutoff - timedelta(days=1), cutoff)


@dataclass(frozen=True)
class Kpis:
    """One consistent reading of every KPI, with the counts the ratios come from."""

    bounds: Bounds
    pending: dict[str, int]
    window_orders: int
    window_held: int
    window_dead_letters: int
    window_duplicates: int
    due: int
    shipped_due: int
    cycle_hours: tuple[float, ...]
    holds: dict[str, int]
    low_stock_skus: int
    orders_today: dict[str, int]
    dead_letters: dict[str, int]

    @property
    def anomaly_ratio(self) -> float:
        seen = self.window_orders + self.window_dead_letters
        return (self.window_held + self.window_dead_letters) / seen if seen else 0.0

    @property
    def same_day_ship_ratio(self) -> float:
        return self.shipped_due / self.due if self.due else 1.0

    @property
    def duplicate_ratio(self) -> float:
        return self.window_duplicates / self.window_orders if self.window_orders else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (`orderhub status --json`)."""
        b = self.bounds
        return {
            "at": b.now.isoformat(), "day": b.day_start.date().isoformat(),
            "window": {"from": b.window_start.isoformat(), "until": b.window_end.isoformat()},
            "pending_orders": self.pending, "pending_total": sum(self.pending.values()),
            "anomaly_ratio": self.anomaly_ratio,
            "anomalies": {"orders": self.window_orders, "held": self.window_held,
                          "dead_letters": self.window_dead_letters},
            "same_day_ship_ratio": self.same_day_ship_ratio,
            "same_day": {"due_from": b.due_from.isoformat(), "due_until": b.due_until.isoformat(),
                         "due": self.due, "shipped": self.shipped_due},
            "fulfillment_cycle_hours": cycle_summary(self.cycle_hours),
            "duplicate_ratio": self.duplicate_ratio, "duplicates": self.window_duplicates,
            "holds": self.holds, "low_stock_skus": self.low_stock_skus,
            "orders_today": self.orders_today, "dead_letters": self.dead_letters,
        }


def cycle_summary(hours: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean and nearest-rank median / 90th percentile of fulfillment cycles."""
    ordered = sorted(hours)

    def rank(q: float) -> float | None:
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else None

    return {"count": len(ordered), "mean": sum(ordered) / len(ordered) if ordered else None,
            "p50": rank(0.5), "p90": rank(0.9)}


def cumulative_buckets(values: Iterable[float], uppers: Sequence[float]
                       ) -> list[tuple[str, float]]:
    """Prometheus histogram buckets (le, cumulative count) at `uppers` and +Inf."""
    values = list(values)
    les = [*(str(float(u)) for u in uppers), "+Inf"]  # as prometheus_client writes them: "1.0"
    limits = [*uppers, float("inf")]
    return [(le, float(sum(1 for v in values if v <= limit)))
            for le, limit in zip(les, limits, strict=True)]


def compute_kpis(conn: Connection, b: Bounds) -> Kpis:
    """Every KPI from the projection as `conn` sees it (give it one snapshot: read_kpis)."""
    window = {"ws": b.window_start, "we": b.window_end}
    orders, held, duplicates = conn.execute(text(_WINDOW_ORDERS), {
        **window, "held": _values(HELD), "dup": S.DUPLICATE.value}).one()
    due, shipped = conn.execute(text(_SAME_DAY), {
        "df": b.due_from, "dt": b.due_until, "not_due": _values(NOT_DUE),
        "past": _values(PAST_SHIPMENT)}).one()
    return Kpis(
        bounds=b,
        pending=_zero_filled(_values(PENDING), _grouped(conn, _PENDING, s=_values(PENDING))),
        window_orders=orders, window_held=held,
        window_dead_letters=conn.execute(text(_WINDOW_DEAD), window).scalar_one(),
        window_duplicates=duplicates, due=due, shipped_due=shipped,
        cycle_hours=tuple(max(float(h), 0.0) for h in conn.execute(text(_CYCLE), {
            "ds": b.day_start, "de": b.day_end}).scalars()),
        holds=_zero_filled(HOLD_REASONS, _grouped(conn, _HOLDS, held=_values(HELD))),
        low_stock_skus=conn.execute(text(_LOW_STOCK)).scalar_one(),
        orders_today=_zero_filled([c.value for c in Channel], _grouped(
            conn, _TODAY, ds=b.day_start, de=b.day_end, dup=S.DUPLICATE.value)),
        dead_letters=_grouped(conn, _DEAD),
    )


def read_kpis(engine: Engine, now: datetime, settings: KpiSettings) -> Kpis:
    """compute_kpis in one read-only, repeatable-read transaction: one snapshot for all."""
    try:
        with engine.connect() as raw:
            conn = raw.execution_options(isolation_level="REPEATABLE READ",
                                         postgresql_readonly=True)
            with conn.begin():
                return compute_kpis(conn, bounds(now, settings))
    except DBAPIError as e:
        if is_transient(e):
            raise TransientError(f"Postgres unavailable: {e}") from e
        raise


def _values(statuses: Iterable[OrderStatus]) -> list[str]:
    return [s.value for s in statuses]


def _grouped(conn: Connection, sql: str, **params: Any) -> dict[str, int]:
    return {str(k): int(n) for k, n in conn.execute(text(sql), params)}


def _zero_filled(keys: Iterable[str], found: dict[str, int]) -> dict[str, int]:
    """Every expected label (so each series always exists), then any unexpected one found."""
    return {**{k: 0 for k in keys}, **found}


_PENDING = "SELECT status, count(*) FROM orders WHERE status = ANY(:s) GROUP BY status"
_WINDOW_ORDERS = """
SELECT count(*),
       count(*) FILTER (WHERE o.status = ANY(:held)),
       count(*) FILTER (WHERE o.status = :dup OR EXISTS (
           SELECT 1 FROM review_queue r WHERE r.order_id = o.id AND r.state = 'open'))
FROM orders o WHERE o.created_at >= :ws AND o.created_at < :we"""
_WINDOW_DEAD = ("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL "
                "AND recorded_at >= :ws AND recorded_at < :we")
# Each query reads its time range through an index (migration 0008), and _SAME_DAY an order's
# lines through the allocations key, so a refresh costs about the same with a year of orders as
# with a day's (`python -m bench.kpi`). An order without lines has bool_and NULL: its status
# decides.
_SAME_DAY = """
WITH d AS (SELECT o.status, COALESCE(lines.all_shipped, o.status = ANY(:past)) AS shipped
           FROM orders o
           CROSS JOIN LATERAL (SELECT bool_and(a.shipped_at IS NOT NULL) AS all_shipped
                               FROM allocations a WHERE a.order_id = o.id) AS lines
           WHERE o.paid_at >= :df AND o.paid_at < :dt)
SELECT count(*) FILTER (WHERE shipped OR NOT (status = ANY(:not_due))),
       count(*) FILTER (WHERE shipped)
FROM d"""
# Orders with a pickup today whose every allocated line is picked up: the last pickup counts.
_CYCLE = """
SELECT extract(epoch FROM (s.at - o.paid_at)) / 3600.0
FROM (SELECT order_id, max(shipped_at) AS at FROM allocations
      WHERE order_id IN (SELECT order_id FROM allocations
                         WHERE shipped_at >= :ds AND shipped_at < :de)
      GROUP BY order_id HAVING bool_and(shipped_at IS NOT NULL)) AS s
JOIN orders o ON o.id = s.order_id
WHERE s.at >= :ds AND s.at < :de AND o.paid_at IS NOT NULL"""
_HOLDS = ("SELECT hold->>'reason', count(*) FROM orders WHERE hold IS NOT NULL "
          "AND status = ANY(:held) GROUP BY 1")
_LOW_STOCK = "SELECT count(DISTINCT sku) FROM stock WHERE available < safety_stock"
_TODAY = ("SELECT channel, count(*) FROM orders WHERE created_at >= :ds AND created_at < :de "
          "AND status <> :dup GROUP BY channel")
_DEAD = "SELECT stage, count(*) FROM dead_letters WHERE replayed_at IS NULL GROUP BY stage"


class KpiCollector:
    """A prometheus_client collector serving the last reading; `refresh` takes a new one.

    Scrapes never touch Postgres: they are cheap, and every series of one scrape comes from the
    same snapshot. `stages` are the dead-letter labels always present (zero when none).
    """

    def __init__(self, read: Callable[[], Kpis], stages: Sequence[str]) -> None:
        self._read = read
        self._stages = tuple(stages)
        self._lock = threading.Lock()
        self.last: Kpis | None = None
        self.refresh_seconds = 0.0
        self.refreshed_at = 0.0
        self.error: str | None = None

    def refresh(self) -> bool:
        """Read every KPI again; on a transient failure keep the last reading (its timestamp
        shows how old it is) and return False."""
        started = time.perf_counter()
        try:
            kpis = self._read()
        except TransientError as e:
            log.warning("KPI refresh failed, serving the reading of %.0f s ago: %s",
                        time.time() - self.refreshed_at if self.refreshed_at else 0.0, e)
            self.error = str(e)
            return False
        with self._lock:
            self.error = None
            self.last = kpis
            self.refresh_seconds = time.perf_counter() - started
            self.refreshed_at = time.time()
        return True

    def ready(self) -> tuple[bool, str]:
        """Ready once a reading exists (a later failed refresh keeps the last one served)."""
        if self.last is None:
            return False, f"no KPI reading yet: {self.error or 'first refresh running'}"
        return True, "ok" if self.error is None else f"serving the last reading: {self.error}"

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            kpis, took, at = self.last, self.refresh_seconds, self.refreshed_at
        if kpis is None:
            return
        yield from _families(kpis, self._stages)
        yield _gauge("refresh_seconds", "How long the last KPI refresh took", took)
        yield _gauge("refreshed_timestamp_seconds", "When the KPIs were last read (Unix time)",
                     at)


def _families(k: Kpis, stages: Sequence[str]) -> Iterator[Metric]:
    yield _labelled("pending_orders", "Orders not yet shipped or finished, by status",
                    "status", k.pending)
    yield _gauge("anomaly_ratio", "(held + dead letters) / (orders + dead letters) in the window",
                 k.anomaly_ratio)
    yield _gauge("same_day_ship_ratio", "Share of the orders due today already shipped",
                 k.same_day_ship_ratio)
    yield HistogramMetricFamily(
        f"{PREFIX}fulfillment_cycle_hours",
        "Hours from payment to carrier pickup, orders picked up today (GMT+8)",
        buckets=cumulative_buckets(k.cycle_hours, CYCLE_BUCKETS), sum_value=sum(k.cycle_hours))
    yield _gauge("duplicate_ratio", "Duplicates and open suspects / orders in the window",
                 k.duplicate_ratio)
    yield _labelled("holds", "Orders on hold, by reason", "reason", k.holds)
    yield _gauge("low_stock_skus", "SKUs below safety stock in some warehouse", k.low_stock_skus)
    yield _labelled("orders_today", "Orders created today (GMT+8), by channel", "channel",
                    k.orders_today)
    yield _labelled("dead_letters", "Dead letters not replayed, by stage", "stage",
                    _zero_filled(stages, k.dead_letters))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}{name}", doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def run_kpi(settings: Settings, endpoints: Endpoints, metrics_port: int) -> None:
    """`orderhub stage kpi`: refresh every ORDERHUB_KPI__REFRESH_S, serve until SIGTERM/SIGINT."""
    engine = make_engine(endpoints.database_url, pool_size=1)
    collector = KpiCollector(
        lambda: read_kpis(engine, datetime.now(SHANGHAI), settings.kpi), DLQ_STAGES)
    registry = CollectorRegistry()
    registry.register(collector)
    server = (serve_metrics(settings.metrics.host, metrics_port, registry, collector.ready)
              if metrics_port else None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    log.info("KPI collector: refreshing every %g s", settings.kpi.refresh_s)
    try:
        while not stop.is_set():
            collector.refresh()
            stop.wait(settings.kpi.refresh_s)
    finally:
        if server is not None:
            server.close()
        engine.dispose()
