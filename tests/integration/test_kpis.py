from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, Engine, text

from runtime.db import in_transaction, make_engine
from runtime.kpi import (
    HOLD_REASONS,
    METRIC_NAMES,
    PENDING,
    KpiCollector,
    Kpis,
    read_kpis,
)
from runtime.settings import KpiSettings
from schemas.base import SHANGHAI
from schemas.order import Channel

TODAY = KpiSettings()


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """November `day`, 2026, in Beijing time."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=SHANGHAI)


MORNING = at(25, 10)
EVENING = at(25, 18)


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def given(engine: Engine, *rows: tuple[str, dict[str, Any]]) -> None:
    def work(conn: Connection) -> None:
        conn.execute(text("INSERT INTO warehouses (code, name, province, city) VALUES "
                          "('WH-HZ', '杭州仓', '浙江省', '杭州市'), "
                          "('WH-GZ', '广州仓', '广东省', '广州市') ON CONFLICT DO NOTHING"))
        for table, values in rows:
            cols = ", ".join(f'"{c}"' for c in values)
            conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES "  # noqa: S608 (test data)
                              f"({', '.join(':' + c for c in values)})"), values)
    in_transaction(engine, work)


def order(order_id: str, status: str, created: datetime, *, paid: datetime | None = None,
          channel: str = "taobao", hold: str | None = None) -> tuple[str, dict[str, Any]]:
    return ("orders", {
        "id": order_id, "channel": channel, "shop": "s1", "native_id": order_id,
        "native_status": "x", "status": status, "status_at": created, "created_at": created,
        "paid_at": paid, "updated_at": created, "currency": "CNY", "paid_amount": 10,
        "paid_cny": 10, "document": "{}",
        "hold": None if hold is None else json.dumps({"reason": hold, "details": {}})})


def line(order_id: str, shipped: datetime | None, *, warehouse: str = "WH-HZ",
         line_no: int = 1) -> tuple[str, dict[str, Any]]:
    return ("allocations", {
        "order_id": order_id, "line_no": line_no, "warehouse": warehouse, "sku": "SKU-1",
        "quantity": 1, "rule": "nearest", "reason": "r", "reserved_at": at(1, 0),
        "shipped_at": shipped})


def dead(offset: int, recorded: datetime, *, stage: str = "normalize",
         replayed: datetime | None = None) -> tuple[str, dict[str, Any]]:
    return ("dead_letters", {
        "stage": stage, "topic": "orders.raw", "partition": 0, "offset": offset, "key": "k",
        "error_class": "InvalidInput", "message": "m", "original": b"{}",
        "recorded_at": recorded, "replayed_at": replayed})


def review(order_id: str, state: str) -> tuple[str, dict[str, Any]]:
    return ("review_queue", {
        "order_id": order_id, "matched_order_id": "OTHER", "matched_fields": "[]",
        "reason": "r", "state": state, "raised_at": at(25, 1)})


def stock(warehouse: str, sku: str, available: int, safety: int) -> tuple[str, dict[str, Any]]:
    return ("stock", {"warehouse": warehouse, "sku": sku, "on_hand": available, "reserved": 0,
                      "available": available, "safety_stock": safety})


def kpis(engine: Engine, now: datetime, settings: KpiSettings = TODAY) -> Kpis:
    return read_kpis(engine, now, settings)


def test_pending_orders_count_each_status_not_yet_shipped_and_show_the_others_as_zero(
    db: Engine,
) -> None:
    given(db, order("A", "paid", at(25, 1)), order("B", "paid", at(20, 1)),
          order("C", "allocated", at(25, 2)), order("D", "backordered", at(25, 3)),
          order("E", "shipped", at(25, 4)), order("F", "cancelled", at(25, 5)))

    assert kpis(db, MORNING).pending == {
        "pending_payment": 0, "paid": 2, "review_hold": 0, "approval_hold": 0,
        "backordered": 1, "allocated": 1}


def test_orders_today_are_cut_at_midnight_in_beijing_not_in_utc(db: Engine) -> None:
    given(db,
          order("Y", "paid", at(24, 23, 59, 59), channel="taobao"),
          order("T1", "paid", at(25, 0), channel="taobao"),
          # 16:30 UTC on the 24th is 00:30 on the 25th in Beijing: today.
          order("T2", "paid", datetime(2026, 11, 24, 16, 30, tzinfo=UTC), channel="jd"),
          order("T3", "allocated", at(25, 23, 59, 59), channel="jd"),
          order("T4", "duplicate", at(25, 9), channel="jd"),
          order("N", "paid", at(26, 0), channel="pdd"))

    today = kpis(db, MORNING).orders_today

    assert today == {**{c.value: 0 for c in Channel}, "taobao": 1, "jd": 2}


def test_anomaly_ratio_is_held_orders_and_unreplayed_dead_letters_over_everything_today(
    db: Engine,
) -> None:
    given(db,
          order("R", "review_hold", at(25, 1), hold="suspected_duplicate"),
          order("A", "approval_hold", at(25, 2), hold="awaiting_approval"),
          order("B", "backordered", at(25, 3), hold="out_of_stock"),
          order("O1", "allocated", at(25, 4)), order("O2", "allocated", at(25, 5)),
          order("O3", "shipped", at(25, 6)),
          order("OLD", "backordered", at(24, 23), hold="out_of_stock"),
          dead(1, at(25, 7)), dead(2, at(25, 8), stage="dedup"),
          dead(3, at(25, 8), replayed=at(25, 9)), dead(4, at(24, 12)))

    k = kpis(db, MORNING)

    assert (k.window_orders, k.window_held, k.window_dead_letters) == (6, 3, 2)
    assert k.anomaly_ratio == pytest.approx(5 / 8)
    assert k.dead_letters == {"normalize": 2, "dedup": 1}


def test_a_24_hour_window_counts_yesterday_evening_and_nothing_after_now(db: Engine) -> None:
    given(db,
          order("Y1", "backordered", at(24, 9, 59), hold="out_of_stock"),
          order("Y2", "backordered", at(24, 11), hold="out_of_stock"),
          order("T1", "allocated", at(25, 9)),
          order("LATER", "allocated", at(25, 11)),
          dead(1, at(24, 20)))

    k = kpis(db, MORNING, KpiSettings(window="24h"))

    assert (k.window_orders, k.window_held, k.window_dead_letters) == (2, 1, 1)
    assert k.anomaly_ratio == pytest.approx(2 / 3)


def test_with_no_orders_the_ratios_read_nothing_wrong_and_nothing_late(db: Engine) -> None:
    k = kpis(db, MORNING)

    assert (k.anomaly_ratio, k.duplicate_ratio, k.same_day_ship_ratio) == (0.0, 0.0, 1.0)
    assert k.cycle_hours == () and k.low_stock_skus == 0


def _shipping_day(db: Engine) -> None:
    given(db,
          # Paid before yesterday's 16:00 cutoff: it was due yesterday.
          order("A", "shipped", at(24, 14), paid=at(24, 15, 59)), line("A", at(24, 18)),
          # Paid at the cutoff: due today; picked up this morning.
          order("B", "shipped", at(24, 16), paid=at(24, 16)), line("B", at(25, 10)),
          order("C", "allocated", at(25, 9), paid=at(25, 9)), line("C", None),
          # Split: one parcel left, the other has not.
          order("D", "allocated", at(25, 12), paid=at(25, 12)), line("D", at(25, 13)),
          line("D", None, warehouse="WH-GZ", line_no=2),
          # Cancelled before shipping: not due.
          order("E", "cancelled", at(25, 15), paid=at(25, 15, 59, 59)),
          # Paid after today's cutoff: due tomorrow, though it already left.
          order("F", "shipped", at(25, 16), paid=at(25, 16)), line("F", at(25, 17)),
          # Marked shipped by its channel, never allocated here: shipped, time unknown.
          order("G", "delivered", at(25, 8), paid=at(25, 8)),
          # Due today and shipped early, yesterday evening.
          order("H", "shipped", at(24, 20), paid=at(24, 20)), line("H", at(24, 22)),
          # Picked up on the stroke of midnight: today.
          order("I", "shipped", at(24, 23), paid=at(24, 23)), line("I", at(25, 0)),
          # Picked up a second before midnight: yesterday.
          order("J", "shipped", at(24, 20, 30), paid=at(24, 20, 30)),
          line("J", at(24, 23, 59, 59)),
          # Split across two warehouses, the last parcel picked up today.
          order("K", "shipped", at(24, 14), paid=at(24, 14)), line("K", at(24, 23)),
          line("K", at(25, 2), warehouse="WH-GZ", line_no=2))


def test_same_day_ship_rate_counts_orders_paid_between_yesterdays_and_todays_cutoff(
    db: Engine,
) -> None:
    _shipping_day(db)

    k = kpis(db, EVENING)

    # Due: B, C, D, G, H, I, J (paid in [24th 16:00, 25th 16:00), not cancelled); shipped: B,
    # G, H, I, J.
    assert (k.due, k.shipped_due) == (7, 5)
    assert k.same_day_ship_ratio == pytest.approx(5 / 7)


def test_the_ship_cutoff_is_a_setting(db: Engine) -> None:
    _shipping_day(db)

    k = kpis(db, EVENING, KpiSettings(ship_cutoff=time(12, 0)))

    # Due: paid in [24th 12:00, 25th 12:00): A, B, C, G, H, I, J, K; all but C shipped.
    assert (k.due, k.shipped_due) == (8, 7)


def test_fulfillment_cycle_is_payment_to_the_last_pickup_of_orders_picked_up_today(
    db: Engine,
) -> None:
    _shipping_day(db)

    k = kpis(db, EVENING)

    # B 18 h, F 1 h, I 1 h, K 12 h; D is not complete, A, H and J were picked up yesterday.
    assert sorted(k.cycle_hours) == pytest.approx([1.0, 1.0, 12.0, 18.0])


def test_duplicate_ratio_counts_duplicates_and_open_suspects_not_released_ones(
    db: Engine,
) -> None:
    given(db,
          order("DUP", "duplicate", at(25, 1)),
          order("SUS", "review_hold", at(25, 2), hold="suspected_duplicate"),
          review("SUS", "open"),
          order("REL", "paid", at(25, 3)), review("REL", "released"),
          order("O1", "allocated", at(25, 4)), order("O2", "allocated", at(25, 5)),
          order("OLD", "duplicate", at(24, 5)))

    k = kpis(db, MORNING)

    assert k.window_duplicates == 2
    assert k.duplicate_ratio == pytest.approx(2 / 5)


def test_holds_count_orders_now_held_by_reason(db: Engine) -> None:
    given(db,
          order("B1", "backordered", at(20, 1), hold="out_of_stock"),
          order("B2", "backordered", at(25, 1), hold="out_of_stock"),
          order("B3", "backordered", at(25, 2), hold="unknown_sku"),
          order("A1", "approval_hold", at(25, 3), hold="awaiting_approval"),
          order("R1", "review_hold", at(25, 4), hold="suspected_duplicate"),
          # Moved on, its old hold document still there: not held.
          order("X", "allocated", at(25, 5), hold="out_of_stock"))

    holds = kpis(db, MORNING).holds

    assert holds == {**{r: 0 for r in HOLD_REASONS}, "out_of_stock": 2, "unknown_sku": 1,
                     "awaiting_approval": 1, "suspected_duplicate": 1}


def test_low_stock_skus_count_each_sku_below_safety_stock_once(db: Engine) -> None:
    given(db, stock("WH-HZ", "A", 1, 5), stock("WH-GZ", "A", 0, 3),
          stock("WH-HZ", "B", 5, 5), stock("WH-HZ", "C", 10, 0), stock("WH-GZ", "D", 2, 3))

    assert kpis(db, MORNING).low_stock_skus == 2


def _exposition(collector: KpiCollector) -> dict[str, Any]:
    registry = CollectorRegistry()
    registry.register(collector)
    text_ = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text_)}


def test_the_collector_exposes_every_kpi_of_one_reading_under_the_contracted_names(
    db: Engine,
) -> None:
    _shipping_day(db)
    collector = KpiCollector(lambda: kpis(db, EVENING), ("ingest", "normalize", "dedup"))

    assert _exposition(collector) == {}  # nothing before the first reading
    assert collector.refresh() and collector.ready() == (True, "ok")
    families = _exposition(collector)

    assert set(families) == set(METRIC_NAMES)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    cycle = "orderhub_kpi_fulfillment_cycle_hours"
    assert families[cycle].type == "histogram"
    assert samples[(f"{cycle}_bucket", (("le", "1.0"),))] == 2
    assert samples[(f"{cycle}_bucket", (("le", "12.0"),))] == 3
    assert samples[(f"{cycle}_bucket", (("le", "24.0"),))] == 4
    assert samples[(f"{cycle}_bucket", (("le", "+Inf"),))] == 4
    assert samples[(f"{cycle}_count", ())] == 4
    assert samples[(f"{cycle}_sum", ())] == pytest.approx(32.0)
    assert samples[("orderhub_kpi_same_day_ship_ratio", ())] == pytest.approx(5 / 7)
    assert samples[("orderhub_kpi_pending_orders", (("status", "allocated"),))] == 2
    assert {dict(k)["status"] for n, k in samples if n == "orderhub_kpi_pending_orders"} == {
        s.value for s in PENDING}
    assert {dict(k)["stage"] for n, k in samples if n == "orderhub_kpi_dead_letters"} == {
        "ingest", "normalize", "dedup"}
    assert samples[("orderhub_kpi_refreshed_timestamp_seconds", ())] > 0
    assert families["orderhub_kpi_refresh_seconds"].samples[0].value > 0


def test_a_refresh_that_cannot_reach_postgres_keeps_serving_the_last_reading(
    db: Engine,
) -> None:
    given(db, order("A", "paid", at(25, 1)))
    down = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    engines = [db, down]
    collector = KpiCollector(lambda: kpis(engines[0], MORNING), ())
    assert collector.refresh()
    first = collector.refreshed_at

    engines.pop(0)
    assert not collector.refresh()

    assert collector.last is not None and collector.last.pending["paid"] == 1
    assert collector.refreshed_at == first
    ready, reason = collector.ready()
    assert ready and reason.startswith("serving the last reading: Postgres unavailable")
    down.dispose()


def test_the_reading_is_one_snapshot_in_a_read_only_transaction(
    db: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runtime import kpi

    seen: list[Any] = []
    compute = kpi.compute_kpis

    def observed(conn: Connection, b: kpi.Bounds) -> Kpis:
        seen.append(tuple(conn.execute(text(
            "SELECT current_setting('transaction_read_only'), "
            "current_setting('transaction_isolation')")).one()))
        return compute(conn, b)

    monkeypatch.setattr(kpi, "compute_kpis", observed)
    read_kpis(db, MORNING, TODAY)

    assert seen == [("on", "repeatable read")]


def test_bounds_put_today_and_the_cutoff_in_beijing_time() -> None:
    from runtime.kpi import bounds

    b = bounds(datetime(2026, 11, 24, 16, 30, tzinfo=UTC), TODAY)

    assert (b.day_start, b.day_end) == (at(25, 0), at(26, 0))
    assert (b.due_from, b.due_until) == (at(24, 16), at(25, 16))
    assert b.now.utcoffset() == timedelta(hours=8)
