from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, text

from allocate.projection import add_warehouse, set_stock
from normalize.process import normalize
from normalize.projection import write_orders
from normalize.rates import RateTable
from runtime.db import in_transaction
from runtime.runner import Record
from runtime.settings import Settings
from schemas.events import OrderAccepted, OrderAllocated, OrderHeld, OrderNormalized
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


def _available(engine: Engine) -> dict[str, int]:
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
