"""200 paid orders for one SKU with 50 units, allocated by 4 real allocator processes at once.

Every process is `orderhub stage allocate` in the same consumer group, on the test's broker and
database. A sampler thread reads the committed stock row every ~20 ms while they run, so the
test sees the stock as any other reader would at each moment, not only at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from allocate.projection import add_warehouse, set_stock
from normalize.process import normalize
from normalize.projection import write_orders
from normalize.rates import RateTable
from runtime.db import in_transaction, make_engine
from runtime.kafka import group_lag
from runtime.settings import Settings
from runtime.stages import STAGES, group_id
from schemas.events import OrderAccepted, OrderNormalized
from schemas.topics import ACCEPTED
from tests.builders import raw, shopify_fixture
from tests.conftest import REPO, free_port
from tests.stagekit import KafkaIO

SKU = "CONC-SKU-1"
UNITS = 50
ORDERS = 200
PROCESSES = 4
FIRST_ID = 7_700_000


def _one_unit_order(settings: Settings, n: int) -> OrderAccepted:
    """A paid Shopify order for 1 unit of SKU, with its own id, as dedup accepts it."""
    payload = shopify_fixture(id=FIRST_ID + n)
    line = dict(payload["line_items"][0], sku=SKU, quantity=1)
    payload["line_items"] = [line]
    order = normalize(raw(payload, delivery=f"d{n}"), RateTable.from_mapping(settings.rates))
    assert order.status == "paid" and [(ln.sku, ln.quantity) for ln in order.lines] == [(SKU, 1)]
    return OrderAccepted(order=order, reason="unique")


@dataclass
class Sampler:
    """Polls the committed stock every ~20 ms and keeps whatever breaks an invariant."""

    url: str
    interval: float = 0.02
    samples: int = 0
    violations: list[tuple[Any, ...]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                while not self.stop.is_set():
                    broken = self.broken(conn)
                    self.samples += 1
                    if broken is not None:
                        self.violations.append(broken)
                    time.sleep(self.interval)
        except BaseException as e:  # reported by the test, not lost in the thread
            self.errors.append(e)
        finally:
            engine.dispose()

    def broken(self, conn: Any) -> tuple[Any, ...] | None:
        """The sample when the one SKU's stock breaks an invariant, else None."""
        row = conn.execute(text(
            "SELECT min(available), min(reserved), "
            "bool_and(on_hand = reserved + available), "
            "(SELECT coalesce(sum(quantity), 0) FROM allocations WHERE sku = :s) "
            "FROM stock"), {"s": SKU}).one()
        low, low_reserved, balanced, allocated = row
        if low < 0 or low_reserved < 0 or not balanced or allocated > UNITS:
            return tuple(row)
        return None


class EverySkuSampler(Sampler):
    """The same watch over every stock row, and every SKU's reservations against its stock."""

    def broken(self, conn: Any) -> tuple[Any, ...] | None:
        row = conn.execute(text(
            "SELECT min(available), min(reserved), bool_and(on_hand = reserved + available), "
            "(SELECT count(*) FROM (SELECT sku, sum(quantity) AS q FROM allocations "
            "GROUP BY sku) a JOIN (SELECT sku, sum(on_hand) AS oh, sum(reserved) AS r "
            "FROM stock GROUP BY sku) s USING (sku) WHERE a.q > s.oh OR a.q <> s.r) "
            "FROM stock")).one()
        low, low_reserved, balanced, mismatched = row
        if low < 0 or low_reserved < 0 or not balanced or mismatched:
            return tuple(row)
        return None


def _consumed(port: int) -> float:
    """Messages this worker took from its inputs, from its own metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    return sum(float(m.group(1)) for m in
               re.finditer(r"^orderhub_allocate_consumed_total\{[^}]*\} (\S+)$", body, re.M))


def _answers(port: int) -> bool:
    try:
        _consumed(port)
    except OSError:
        return False
    return True


def _wait(condition: Any, timeout: float, what: str, procs: list[subprocess.Popen[bytes]],
          logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [(i, p.returncode) for i, p in enumerate(procs) if p.poll() is not None]
        assert not dead, f"allocator(s) exited early {dead}: {logs[dead[0][0]].read_text()[-3000:]}"
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(30))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    return codes


@dataclass(frozen=True)
class Race:
    """What the allocator processes did: messages each consumed, exit codes, seconds taken."""

    consumed: list[float]
    codes: list[int]
    elapsed: float
    logs: list[Path]


def _race(settings: Settings, engine: Engine, tmp_path: Path, accepted: list[OrderAccepted],
          sampler: Sampler) -> Race:
    """PROCESSES allocator processes in one group, the orders produced once all are up, until
    the group drained and no order is left `paid`; the sampler watches throughout."""
    assert settings.database.url and settings.kafka.bootstrap
    in_transaction(engine, lambda conn: write_orders(conn, [
        OrderNormalized(order=a.order, delivery_id=f"d{n}", received_at=a.order.created_at)
        for n, a in enumerate(accepted)]))
    group = group_id(settings, "allocate")
    sources = [s.full_name(settings.kafka.topic_prefix) for s in STAGES["allocate"].sources]
    ports = [free_port() for _ in range(PROCESSES)]
    logs = [tmp_path / f"allocate-{i}.log" for i in range(PROCESSES)]
    watcher = threading.Thread(target=sampler.run, daemon=True)
    procs: list[subprocess.Popen[bytes]] = []
    codes: list[int] = []
    consumed: list[float] = []
    started = time.monotonic()
    try:
        watcher.start()
        for port, log in zip(ports, logs, strict=True):
            with log.open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "runtime.cli", "stage", "allocate", "--metrics-port",
                     str(port)], cwd=REPO, env=dict(os.environ), stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT))
        # Produce only once every worker is up and has had time to join the group (Tansu does
        # not answer DescribeGroups, so membership is not observable directly): the partitions
        # are then spread over all four and they really race for the stock rows.
        bootstrap = settings.kafka.bootstrap
        _wait(lambda: all(_answers(port) for port in ports), 90, "4 metrics endpoints", procs,
              logs)
        time.sleep(2 * settings.kafka.session_timeout_s + 3)
        KafkaIO(settings).produce(ACCEPTED, [(a.order.id, a) for a in accepted])

        def drained() -> bool:
            lag = sum(p.lag for p in group_lag(bootstrap, {group: sources},
                                               settings.kafka.partitions))
            with engine.connect() as conn:
                paid = conn.execute(text("SELECT count(*) FROM orders WHERE status = 'paid'"))
                return lag == 0 and paid.scalar_one() == 0

        _wait(drained, 120, "the group to drain and every order to leave `paid`", procs, logs)
        consumed = [_consumed(port) for port in ports]
    finally:
        codes = _stop(procs)
        sampler.stop.set()
        watcher.join(10)
    return Race(consumed, codes, time.monotonic() - started, logs)


def test_four_allocator_processes_sell_exactly_the_stock_and_backorder_the_rest(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    assert settings.database.url and settings.kafka.bootstrap
    assert settings.kafka.partitions >= PROCESSES

    def setup(conn: Any) -> None:
        add_warehouse(conn, "WH-HZ", "WH-HZ", "浙江省", "杭州市", 10)
        set_stock(conn, "WH-HZ", SKU, UNITS)

    in_transaction(engine, setup)
    accepted = [_one_unit_order(settings, n) for n in range(ORDERS)]
    assert len({a.order.id for a in accepted}) == ORDERS
    sampler = Sampler(settings.database.url)
    race = _race(settings, engine, tmp_path, accepted, sampler)
    consumed, codes, logs = race.consumed, race.codes, race.logs

    assert not sampler.errors, sampler.errors
    assert sampler.samples > 10, "the sampler never got to look"
    assert sampler.violations == [], f"stock broke an invariant while allocating: " \
                                     f"{sampler.violations[:10]}"
    with engine.connect() as conn:
        by_status = dict(conn.execute(text(
            "SELECT status, count(*) FROM orders GROUP BY 1")).all())
        stock = conn.execute(text(
            "SELECT on_hand, reserved, available FROM stock WHERE sku = :s"), {"s": SKU}).one()
        rows, units, distinct_orders, lines_per_order = conn.execute(text(
            "SELECT count(*), coalesce(sum(quantity), 0), count(DISTINCT order_id), "
            "coalesce(max(n), 0) FROM allocations, LATERAL (SELECT count(*) AS n FROM "
            "allocations a WHERE a.order_id = allocations.order_id) per_order")).one()
        allocated_ids = set(conn.execute(text(
            "SELECT id FROM orders WHERE status = 'allocated'")).scalars())
        reserved_ids = set(conn.execute(text("SELECT order_id FROM allocations")).scalars())
    assert by_status == {"allocated": UNITS, "backordered": ORDERS - UNITS}, by_status
    assert tuple(stock) == (UNITS, UNITS, 0)
    assert (rows, units, distinct_orders, lines_per_order) == (UNITS, UNITS, UNITS, 1)
    assert allocated_ids == reserved_ids
    # At least two of the workers did part of the work (each one's own consumed counter).
    assert sum(consumed) >= ORDERS, consumed
    assert sum(1 for c in consumed if c > 0) >= 2, consumed
    assert codes == [0] * PROCESSES, [log.read_text()[-2000:] for log in logs]
    print(f"\n4 allocators: consumed per worker {consumed}, {sampler.samples} stock samples, "
          f"{race.elapsed:.1f}s")


MIXED = ("MIX-A", "MIX-B", "MIX-C")
MIXED_UNITS = 15  # per warehouse and SKU


def _two_sku_order(settings: Settings, n: int) -> OrderAccepted:
    """A paid order for two of the MIXED SKUs, in a rotating line order, 1-2 units each."""
    payload = shopify_fixture(id=FIRST_ID + 50_000 + n)
    first, second = MIXED[n % 3], MIXED[(n + 1 + n // 3 % 2) % 3]
    payload["line_items"] = [dict(payload["line_items"][0], sku=first, quantity=1 + n % 2),
                             dict(payload["line_items"][1], sku=second, quantity=1 + n // 2 % 2)]
    order = normalize(raw(payload, delivery=f"m{n}"), RateTable.from_mapping(settings.rates))
    assert order.status == "paid" and len({ln.sku for ln in order.lines}) == 2
    return OrderAccepted(order=order, reason="unique")


def test_four_allocators_racing_for_orders_of_several_skus_in_two_warehouses_never_oversell(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    assert settings.database.url and settings.kafka.partitions >= PROCESSES

    def setup(conn: Any) -> None:
        add_warehouse(conn, "WH-HZ", "WH-HZ", "浙江省", "杭州市", 10)
        add_warehouse(conn, "WH-SH", "WH-SH", "上海市", "上海市", 20)
        for warehouse in ("WH-HZ", "WH-SH"):
            for sku in MIXED:
                set_stock(conn, warehouse, sku, MIXED_UNITS)

    in_transaction(engine, setup)
    accepted = [_two_sku_order(settings, n) for n in range(ORDERS)]
    sampler = EverySkuSampler(settings.database.url)
    race = _race(settings, engine, tmp_path, accepted, sampler)

    assert not sampler.errors, sampler.errors
    assert sampler.samples > 10, "the sampler never got to look"
    assert sampler.violations == [], f"stock broke an invariant: {sampler.violations[:10]}"
    assert race.codes == [0] * PROCESSES, [log.read_text()[-2000:] for log in race.logs]
    assert sum(1 for c in race.consumed if c > 0) >= 2, race.consumed
    with engine.connect() as conn:
        status: dict[str, str] = {i: s for i, s in conn.execute(text(
            "SELECT id, status FROM orders"))}
        taken: dict[tuple[str, int], int] = {(o, n): q for o, n, q in conn.execute(text(
            "SELECT order_id, line_no, sum(quantity) FROM allocations GROUP BY 1, 2"))}
        left: dict[str, int] = {sku: a for sku, a in conn.execute(text(
            "SELECT sku, sum(available) FROM stock GROUP BY sku"))}
        on_hand = conn.execute(text("SELECT sum(on_hand) FROM stock")).scalar_one()
    assert set(status.values()) == {"allocated", "backordered"}
    assert on_hand == 2 * len(MIXED) * MIXED_UNITS
    for a in accepted:
        lines = {n: ln.quantity for n, ln in enumerate(a.order.lines, start=1)}
        if status[a.order.id] == "allocated":  # every line reserved in full, nothing more
            assert {n: taken.get((a.order.id, n)) for n in lines} == lines
        else:  # held only because it could not be filled, and stock only ever went down
            assert not any(o == a.order.id for o, _ in taken)
            assert any(left[ln.sku or ""] < ln.quantity for ln in a.order.lines), a.order.id
    sold = sum(taken.values())
    assert 0 < sold == on_hand - sum(left.values())
    print(f"\n4 allocators, {len(MIXED)} SKUs x 2 warehouses: {sold} of {on_hand} units sold, "
          f"{sum(1 for s in status.values() if s == 'allocated')} orders allocated, "
          f"consumed {race.consumed}, {race.elapsed:.1f}s")
