from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event, text

from allocate.agent import AllocateStage
from allocate.projection import add_warehouse, set_stock
from normalize.process import normalize
from normalize.projection import write_orders
from normalize.rates import RateTable
from runtime.db import in_transaction
from runtime.metrics import build_stage_metrics
from runtime.runner import Context, Record, StageRunner
from runtime.settings import Settings
from runtime.stages import group_id
from schemas.base import SHANGHAI
from schemas.events import (
    OrderAccepted,
    OrderAllocated,
    OrderHeld,
    OrderNormalized,
    OrderStatusChanged,
)
from schemas.order import OrderStatus
from schemas.topics import ACCEPTED, ALLOCATED, HELD
from tests.builders import raw, shopify_fixture
from tests.stagekit import KafkaIO, run_stage


def _accepted(settings: Settings, engine: Engine, **changes: Any) -> OrderAccepted:
    """An accepted order whose orders row exists, as normalize would have left it."""
    order = normalize(raw(shopify_fixture(**changes)), RateTable.from_mapping(settings.rates))
    normalized = OrderNormalized(order=order, delivery_id="d", received_at=order.created_at)
    in_transaction(engine, lambda conn: write_orders(conn, [normalized]))
    return OrderAccepted(order=order, reason="unique")


def _stock(engine: Engine, code: str, **units: int) -> None:
    def work(conn: Any) -> None:
        add_warehouse(conn, code, code, "浙江省", "杭州市", 10)
        for sku, qty in units.items():
            set_stock(conn, code, sku, qty)
    in_transaction(engine, work)


def _allocate(settings: Settings, *accepted: OrderAccepted) -> list[Record]:
    io = KafkaIO(settings)
    io.produce(ACCEPTED, [(a.order.id, a) for a in accepted])
    run_stage("allocate", settings, io, io.read(ACCEPTED, expect=len(accepted)))
    return io.read(ALLOCATED, expect=0, timeout=3) + io.read(HELD, expect=0, timeout=1)


def _available(engine: Engine) -> dict[str, tuple[int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sku, available, reserved, on_hand FROM stock"))
        return {r.sku: (r.available, r.reserved, r.on_hand) for r in rows}


def test_a_paid_order_is_reserved_in_the_warehouse_and_allocated(
    settings: Settings, engine: Engine
) -> None:
    _stock(engine, "WH-HZ", IPOD2008PINK=5, IPOD2008BLACK=5)
    accepted = _accepted(settings, engine)
    [out] = _allocate(settings, accepted)
    allocated = OrderAllocated.model_validate_json(out.value or b"")
    assert [s.warehouse for s in allocated.shipments] == ["WH-HZ"]
    assert allocated.order.status == "allocated"
    assert _available(engine) == {"IPOD2008PINK": (4, 1, 5), "IPOD2008BLACK": (3, 2, 5)}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM orders")).scalar() == "allocated"


def test_replaying_an_accepted_order_reserves_nothing_twice_and_emits_the_same_allocation(
    settings: Settings, engine: Engine
) -> None:
    _stock(engine, "WH-HZ", IPOD2008PINK=5, IPOD2008BLACK=5)
    accepted = _accepted(settings, engine)
    first = _allocate(settings, accepted)
    second = _allocate(settings, accepted)
    values = {OrderAllocated.model_validate_json(r.value or b"").model_dump_json()
              for r in first + second}
    assert len(first + second) >= 2 and len(values) == 1
    assert _available(engine)["IPOD2008PINK"] == (4, 1, 5)


def test_not_enough_stock_holds_the_order_as_backordered_and_reserves_nothing(
    settings: Settings, engine: Engine
) -> None:
    _stock(engine, "WH-HZ", IPOD2008PINK=5, IPOD2008BLACK=0)
    [out] = _allocate(settings, _accepted(settings, engine))
    held = OrderHeld.model_validate_json(out.value or b"")
    assert held.hold.reason == "out_of_stock"
    assert held.hold.details == {"IPOD2008BLACK": "need 2, 0 in all warehouses"}
    assert _available(engine)["IPOD2008PINK"] == (5, 0, 5)
    with engine.connect() as conn:
        status, hold = conn.execute(text("SELECT status, hold FROM orders")).one()
    assert (status, hold["reason"]) == ("backordered", "out_of_stock")


def test_with_no_warehouse_the_order_is_held_instead_of_pretending_stock_exists(
    settings: Settings, engine: Engine
) -> None:
    [out] = _allocate(settings, _accepted(settings, engine))
    assert OrderHeld.model_validate_json(out.value or b"").hold.reason == "no_warehouse"


def test_an_unpaid_order_is_not_allocated(settings: Settings, engine: Engine) -> None:
    _stock(engine, "WH-HZ", IPOD2008PINK=5, IPOD2008BLACK=5)
    assert _allocate(settings, _accepted(settings, engine, financial_status="pending")) == []
    assert _available(engine)["IPOD2008PINK"] == (5, 0, 5)


def test_concurrent_allocators_never_oversell(settings: Settings, engine: Engine) -> None:
    _stock(engine, "WH-HZ", IPOD2008PINK=7, IPOD2008BLACK=100)
    orders = [_accepted(settings, engine, id=9000 + i) for i in range(20)]
    io = KafkaIO(settings)
    io.produce(ACCEPTED, [(a.order.id, a) for a in orders])
    records = io.read(ACCEPTED, expect=20)
    halves = [records[0::2], records[1::2]]
    threads = [threading.Thread(target=run_stage, args=("allocate", settings, io, h))
               for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        by_status = dict(conn.execute(text("SELECT status, count(*) FROM orders GROUP BY 1")).all())
        reserved = conn.execute(text("SELECT sum(quantity) FROM allocations "
                                     "WHERE sku = 'IPOD2008PINK'")).scalar()
    assert by_status == {"allocated": 7, "backordered": 13}
    assert reserved == 7
    assert _available(engine)["IPOD2008PINK"] == (0, 7, 7)


# -- the bulk path (issue 9): a run of accepted orders planned against locked stock -----------

def _wanting(settings: Settings, engine: Engine, n: int, units: int, sku: str = "SCARCE",
             **changes: Any) -> OrderAccepted:
    """An accepted order for `units` of one SKU, with its own id."""
    payload = shopify_fixture(id=8_800_000 + n, **changes)
    payload["line_items"] = [dict(payload["line_items"][0], sku=sku, quantity=units)]
    return _accepted_from(settings, engine, payload, n)


def _accepted_from(settings: Settings, engine: Engine, payload: dict[str, Any],
                   n: int) -> OrderAccepted:
    order = normalize(raw(payload, delivery=f"d{n}"), RateTable.from_mapping(settings.rates))
    normalized = OrderNormalized(order=order, delivery_id=f"d{n}", received_at=order.created_at)
    in_transaction(engine, lambda conn: write_orders(conn, [normalized]))
    return OrderAccepted(order=order, reason="unique")


def test_one_batch_competing_for_scarce_stock_sells_exactly_it_and_backorders_in_batch_order(
    settings: Settings, engine: Engine
) -> None:
    _stock(engine, "WH-HZ", SCARCE=7)
    wants = [3, 3, 2, 1, 1, 2, 1, 4, 1, 1, 2, 3]
    orders = [_wanting(settings, engine, n, units) for n, units in enumerate(wants)]
    io = KafkaIO(settings)
    io.produce(ACCEPTED, [(a.order.id, a) for a in orders])
    records = io.read(ACCEPTED, expect=len(orders))
    run_stage("allocate", settings, io, records)  # one batch, one transaction

    # What selling in the batch's order gives: each order takes its units while they last.
    by_id = {a.order.id: a.order.lines[0].quantity for a in orders}
    left, expected = 7, []
    for record in records:
        order_id = OrderAccepted.model_validate_json(record.value or b"").order.id
        if by_id[order_id] <= left:
            left -= by_id[order_id]
            expected.append(order_id)
    assert left == 0 and 0 < len(expected) < len(orders)  # the stock ran out mid-batch
    allocated = [OrderAllocated.model_validate_json(r.value or b"").order.id
                 for r in io.read(ALLOCATED, expect=len(expected))]
    held = [OrderHeld.model_validate_json(r.value or b"")
            for r in io.read(HELD, expect=len(orders) - len(expected))]
    assert sorted(allocated) == sorted(expected)
    assert {h.order.id for h in held} == set(by_id) - set(expected)
    assert {h.hold.reason for h in held} == {"out_of_stock"}
    with engine.connect() as conn:
        reserved: dict[str, int] = {o: q for o, q in conn.execute(text(
            "SELECT order_id, sum(quantity) FROM allocations GROUP BY 1"))}
        status: dict[str, str] = {o: s for o, s in conn.execute(text(
            "SELECT id, status FROM orders"))}
    assert reserved == {i: by_id[i] for i in expected}
    assert status == {i: "allocated" if i in expected else "backordered" for i in by_id}
    assert _available(engine)["SCARCE"] == (0, 7, 7)


STATE = {
    "orders": "SELECT id, status, status_at, hold FROM orders ORDER BY id",
    "allocations": "SELECT order_id, line_no, warehouse, sku, quantity, rule, reason, "
                   "reserved_at, shipped_at FROM allocations ORDER BY 1, 2, 3",
    "decisions": "SELECT order_id, rule, reason, candidates, decided_at "
                 "FROM allocation_decisions ORDER BY 1",
    "history": "SELECT order_id, event_key, kind, status, occurred_at, data FROM order_events "
               "WHERE stage = 'allocate' ORDER BY id",
    "stock": "SELECT warehouse, sku, on_hand, reserved, available, low FROM stock ORDER BY 1, 2",
    "approvals": "SELECT order_id, paid_cny, reasons, state FROM approvals ORDER BY 1",
}


def _project(settings: Settings, engine: Engine, items: list[Any], batched: bool,
             ) -> tuple[list[tuple[str, str, str]], dict[str, list[Any]], int]:
    """One batch through `project` in a transaction that is rolled back: what it emitted, the
    state it left and how many statements it took."""
    stage = AllocateStage(settings.allocate, CollectorRegistry(), batched=batched)
    ctx = Context(now=datetime(2026, 11, 12, 10, tzinfo=SHANGHAI), settings=settings)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    with engine.connect() as conn, conn.begin() as tx:
        event.listen(conn, "before_cursor_execute", count)
        emits = stage.project(conn, items, ctx)
        event.remove(conn, "before_cursor_execute", count)
        state = {k: [tuple(r) for r in conn.execute(text(q))] for k, q in STATE.items()}
        tx.rollback()
    return ([(e.topic.name, e.key, e.value.model_dump_json()) for e in emits], state,
            len(statements))


def test_the_bulk_path_emits_and_writes_exactly_what_the_per_order_path_does(
    settings: Settings, engine: Engine
) -> None:
    settings = settings.model_copy(update={"allocate": settings.allocate.model_copy(
        update={"hold_rules": ("buyer_note", "first_time_address")})})
    _stock(engine, "WH-HZ", SCARCE=6, IPOD2008PINK=50, IPOD2008BLACK=50)
    _stock(engine, "WH-SH", SCARCE=2)
    with engine.begin() as conn:  # so that reserving crosses below safety stock: low_stock
        conn.execute(text("UPDATE stock SET safety_stock = 3 WHERE sku = 'SCARCE'"))
    plain = [_wanting(settings, engine, n, units, note=None)
             for n, units in enumerate([2, 3, 2, 1, 1, 3])]
    noted = _wanting(settings, engine, 10, 1)  # the fixture's buyer note: awaiting approval
    unpaid = _wanting(settings, engine, 11, 1, note=None, financial_status="pending")
    replayed = _wanting(settings, engine, 12, 1, note=None)
    released = _wanting(settings, engine, 13, 1, note=None)
    shipped = _wanting(settings, engine, 14, 1, note=None)
    _allocate(settings, replayed, released, shipped)  # committed before the batch
    cancel = OrderStatusChanged(order_id=released.order.id, status=OrderStatus.CANCELLED,
                                at=datetime(2026, 11, 12, 9, tzinfo=SHANGHAI), source="shopify")
    left = shipped.model_copy(update={"order": shipped.order.model_copy(
        update={"status": OrderStatus.SHIPPED})})
    batch = [plain[0], noted, replayed, plain[1], unpaid, plain[2], plain[0], plain[3], cancel,
             plain[4], left, plain[5]]

    old = _project(settings, engine, batch, batched=False)
    new = _project(settings, engine, batch, batched=True)

    assert new[0] == old[0]
    assert new[1] == old[1]
    topics = [t for t, _, _ in new[0]]
    assert {"orders.allocated", "orders.held", "inventory.events"} <= set(topics)
    assert any('"low_stock"' in value for _, _, value in new[0])
    assert len(new[1]["approvals"]) == 1 and len(new[1]["allocations"]) > 4
    assert new[2] < old[2]


def test_a_run_of_accepted_orders_takes_the_same_number_of_statements_whatever_its_length(
    settings: Settings, engine: Engine
) -> None:
    _stock(engine, "WH-HZ", SCARCE=30)
    _stock(engine, "WH-SH", SCARCE=30)
    orders = [_wanting(settings, engine, n, 1 + n % 3, note=None) for n in range(40)]
    few = _project(settings, engine, orders[:4], batched=True)[2]
    many = _project(settings, engine, orders, batched=True)[2]
    per_order = _project(settings, engine, orders[:4], batched=False)[2]
    assert few == many
    assert per_order > few


def test_a_deadlock_on_stock_rolls_the_batch_back_and_the_runner_retries_it(
    settings: Settings, engine: Engine
) -> None:
    _stock(engine, "WH-HZ", IPOD2008PINK=5, IPOD2008BLACK=5)
    accepted = _accepted(settings, engine)
    io = KafkaIO(settings)
    io.produce(ACCEPTED, [(accepted.order.id, accepted)])
    records = io.read(ACCEPTED, expect=1)
    registry = CollectorRegistry()
    assert settings.database.url
    runner = StageRunner(AllocateStage(settings.allocate, registry), engine=engine,
                         send=io.send, metrics=build_stage_metrics("allocate", registry),
                         settings=settings, group=group_id(settings, "allocate"))
    with engine.connect() as other:
        # Another transaction holds the stock row the batch locks last (PINK after BLACK) and
        # never reports a deadlock itself, so the batch is the one Postgres picks to abort.
        other.execute(text("SET deadlock_timeout = '60s'"))
        other.execute(text("SELECT 1 FROM stock WHERE sku = 'IPOD2008PINK' FOR UPDATE"))
        worker = threading.Thread(target=asyncio.run, args=(runner.run_batch(records),))
        worker.start()
        _wait_for_a_lock_wait(engine)
        # ... and then wants the order row the batch locked first: a cycle.
        other.execute(text("SELECT 1 FROM orders WHERE id = :o FOR UPDATE"),
                      {"o": accepted.order.id})
        other.commit()
        worker.join(60)
    assert not worker.is_alive()
    assert registry.get_sample_value("orderhub_allocate_retries_total") == 1
    assert _available(engine)["IPOD2008PINK"] == (4, 1, 5)
    [out] = io.read(ALLOCATED, expect=1)
    assert OrderAllocated.model_validate_json(out.value or b"").order.id == accepted.order.id


def _wait_for_a_lock_wait(engine: Engine) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND wait_event_type = 'Lock'")).scalar():
                return
        time.sleep(0.05)
    raise AssertionError("the batch never waited for the stock row")


def test_a_batch_waits_for_stock_another_batch_holds_and_plans_against_what_that_one_left(
    settings: Settings, engine: Engine
) -> None:
    _stock(engine, "WH-HZ", SCARCE=1)
    first, second = (_wanting(settings, engine, n, 1) for n in range(2))
    ctx = Context(now=datetime(2026, 11, 12, 10, tzinfo=SHANGHAI), settings=settings)
    outcome: list[Any] = []

    def later_batch() -> None:
        stage = AllocateStage(settings.allocate, CollectorRegistry())
        try:
            outcome.extend(in_transaction(engine, lambda c: stage.project(c, [second], ctx)))
        except Exception as e:  # the test reports it
            outcome.append(e)

    with engine.connect() as conn:
        with conn.begin():
            [emit] = AllocateStage(settings.allocate, CollectorRegistry()).project(
                conn, [first], ctx)
            worker = threading.Thread(target=later_batch)
            worker.start()
            _wait_for_a_lock_wait(engine)  # the later batch waits for the stock row...
        worker.join(30)  # ...and reads it once the first batch committed
    assert isinstance(emit.value, OrderAllocated)
    [held] = outcome
    assert isinstance(held.value, OrderHeld) and held.value.hold.reason == "out_of_stock", held
    assert _available(engine)["SCARCE"] == (0, 1, 1)
