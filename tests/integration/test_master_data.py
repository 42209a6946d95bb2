from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from allocate.inventory import check_low, set_level
from runtime.db import in_transaction
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.events import InventoryChanged
from schemas.topics import INVENTORY
from tests.conftest import run_cli
from tests.stagekit import KafkaIO

MASTER = Path(__file__).parents[1] / "fixtures" / "master"
AT = datetime(2026, 11, 11, 9, 0, tzinfo=SHANGHAI)


def _ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def _refused(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def _rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql)).mappings()]


def _events(settings: Settings, expect: int, timeout: float = 15.0) -> list[InventoryChanged]:
    records = KafkaIO(settings).read(INVENTORY, expect=expect, timeout=timeout)
    events = [InventoryChanged.model_validate_json(r.value or b"") for r in records]
    assert [r.key for r in records] == [e.sku.encode() for e in events]
    return sorted(events, key=lambda e: e.at)


def _loaded() -> None:
    _ok("warehouses", "load", str(MASTER / "warehouses.yaml"))


def _reserve(engine: Engine, warehouse: str, sku: str, units: int) -> None:
    """As the allocate stage would: units move from available to reserved."""
    in_transaction(engine, lambda conn: conn.execute(text(
        "UPDATE stock SET available = available - :q, reserved = reserved + :q "
        "WHERE warehouse = :w AND sku = :s"), {"q": units, "w": warehouse, "s": sku}))


def test_loaded_warehouses_are_listed_with_coordinates_carriers_and_stock(
    settings: Settings,
) -> None:
    assert "4 warehouse(s) loaded from warehouses.yaml: 4 new, 0 updated" in _ok(
        "warehouses", "load", str(MASTER / "warehouses.yaml"))
    _ok("stock", "set", "WH-GZ", "TQF-TEE-RED-110", "7")
    listed = json.loads(run_cli("warehouses", "list", "--json").stdout)
    assert [w["code"] for w in listed] == ["WH-HZ", "WH-GZ", "WH-CD", "WH-BJ"]
    gz = listed[1]
    assert (gz["name"], gz["province"], gz["city"], gz["priority"]) == (
        "广州仓", "广东省", "广州市", 20)
    assert (gz["latitude"], gz["longitude"], gz["carriers"]) == ("23.1291", "113.2644",
                                                                 ["ZTO", "SF"])
    assert (gz["skus"], gz["available"], gz["active"]) == (1, 7, True)
    assert listed[2]["latitude"] is None and listed[3]["active"] is False
    table = _ok("warehouses", "list")
    assert "WH-CD" in table and "(city centre)" in table and "INACTIVE" in table
    assert "0 new, 4 updated" in _ok("warehouses", "load", str(MASTER / "warehouses.yaml"))


def test_a_bad_warehouse_entry_is_named_with_its_field_and_nothing_is_written(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    bad = tmp_path / "warehouses.yaml"
    bad.write_text(
        (MASTER / "warehouses.yaml").read_text(encoding="utf-8")
        + "  - {code: WH-XA, name: 西安仓, province: 陕西省, city: 西安市, priority: high}\n"
        + "  - {code: WH-WH, name: 武汉仓, province: 湖北省, city: 武汉市, latitude: 30.59}\n",
        encoding="utf-8")
    message = _refused("warehouses", "load", str(bad))
    assert "warehouse 5 (WH-XA): priority: Input should be a valid integer" in message
    assert "warehouse 6 (WH-WH): entry: Value error, latitude and longitude go together" in message
    assert "nothing was written" in message
    assert _rows(engine, "SELECT code FROM warehouses") == []


def test_imported_stock_is_shown_ledgered_and_sent_as_events(
    settings: Settings, engine: Engine
) -> None:
    _loaded()
    imported = _ok("stock", "import", str(MASTER / "stock.csv"))
    assert "4 stock level(s) set from stock.csv" in imported
    assert "LOW STOCK: WH-CD/TQF-MUG-WHT available 8" in imported
    shown = json.loads(run_cli("stock", "show", "--warehouse", "WH-HZ", "--json").stdout)
    assert [(r["sku"], r["on_hand"], r["reserved"], r["available"], r["safety_stock"],
             r["defective"]) for r in shown] == [
        ("TQF-TEE-BLU-120", 25, 0, 25, 5, 0), ("TQF-TEE-RED-110", 40, 0, 40, 10, 0)]
    assert "2 stock row(s)" in _ok("stock", "show", "--sku", "TQF-TEE-RED-110")
    ledger = _rows(engine, "SELECT event_key, kind, warehouse, sku, on_hand_delta, reason "
                           "FROM stock_movements ORDER BY id")
    assert sorted((r["reason"], r["kind"], r["sku"], r["on_hand_delta"]) for r in ledger) == [
        ("import:stock.csv line 2", "stock_set", "TQF-TEE-RED-110", 40),
        ("import:stock.csv line 3", "stock_set", "TQF-TEE-BLU-120", 25),
        ("import:stock.csv line 4", "stock_set", "TQF-TEE-RED-110", 12),
        ("import:stock.csv line 5", "stock_set", "TQF-MUG-WHT", 8)]
    assert len({r["event_key"] for r in ledger}) == 4
    events = _events(settings, expect=5)
    assert sorted((e.kind, e.warehouse, e.sku, e.available, e.delta) for e in events) == [
        ("low_stock", "WH-CD", "TQF-MUG-WHT", 8, 0),
        ("stock_set", "WH-CD", "TQF-MUG-WHT", 8, 8),
        ("stock_set", "WH-GZ", "TQF-TEE-RED-110", 12, 12),
        ("stock_set", "WH-HZ", "TQF-TEE-BLU-120", 25, 25),
        ("stock_set", "WH-HZ", "TQF-TEE-RED-110", 40, 40)]
    low = json.loads(run_cli("stock", "low", "--json").stdout)
    assert [(r["warehouse"], r["sku"], r["available"], r["safety_stock"]) for r in low] == [
        ("WH-CD", "TQF-MUG-WHT", 8, 10)]


@pytest.mark.parametrize(("rows", "expected"), [
    ("WH-HZ,A,5\nWH-HZ,B,lots\nWH-HZ,C,-1\nWH-HZ,A,6\n",
     ["line 3: on_hand must be a whole number", "line 4: on_hand must be a whole number",
      "line 5: WH-HZ/A is already on line 2"]),
    ("WH-HZ,A,5\nWH-SZ,B,2\n", ["line 3: no warehouse 'WH-SZ'"]),
])
def test_a_bad_stock_file_is_refused_whole_with_line_numbers(
    settings: Settings, engine: Engine, tmp_path: Path, rows: str, expected: list[str]
) -> None:
    _loaded()
    file = tmp_path / "stock.csv"
    file.write_text("warehouse,sku,on_hand\n" + rows, encoding="utf-8")
    message = _refused("stock", "import", str(file))
    assert all(e in message for e in expected), message
    assert "nothing was written" in message
    assert _rows(engine, "SELECT * FROM stock") == []
    assert _rows(engine, "SELECT * FROM stock_movements") == []


def test_each_change_is_one_ledger_row_and_one_event_and_adjust_keeps_reserved_units(
    settings: Settings, engine: Engine
) -> None:
    _loaded()
    assert "WH-HZ/TQF-TEE-RED-110: on hand 10, available 10" in _ok(
        "stock", "set", "WH-HZ", "TQF-TEE-RED-110", "10")
    _reserve(engine, "WH-HZ", "TQF-TEE-RED-110", 6)
    assert "on hand +5, available 9" in _ok(
        "stock", "adjust", "WH-HZ", "TQF-TEE-RED-110", "5", "--reason", "found in aisle 3")
    refused = _refused("stock", "adjust", "WH-HZ", "TQF-TEE-RED-110", "-10", "--reason", "lost")
    assert ("WH-HZ/TQF-TEE-RED-110: on hand 15 -10 would be 5, below the 6 unit(s) reserved "
            "for orders; at most 9 unit(s) can be removed") in refused
    assert "on hand -9, available 0" in _ok(
        "stock", "adjust", "WH-HZ", "TQF-TEE-RED-110", "-9", "--reason", "damaged")
    ledger = _rows(engine, "SELECT event_key, kind, on_hand_delta, reason FROM stock_movements "
                           "ORDER BY id")
    assert [(r["kind"], r["on_hand_delta"], r["reason"]) for r in ledger] == [
        ("stock_set", 10, None), ("stock_adjusted", 5, "found in aisle 3"),
        ("stock_adjusted", -9, "damaged")]
    assert [r["event_key"].split(":")[0] for r in ledger] == ["set", "adjust", "adjust"]
    events = _events(settings, expect=3)
    assert [(e.kind, e.delta, e.available, e.source) for e in events] == [
        ("stock_set", 10, 10, "cli"), ("stock_adjusted", 5, 9, "cli"),
        ("stock_adjusted", -9, 0, "cli")]
    assert _rows(engine, "SELECT on_hand, reserved, available FROM stock") == [
        {"on_hand": 6, "reserved": 6, "available": 0}]


def test_low_stock_alerts_once_per_crossing_below_safety_stock(engine: Engine) -> None:
    def step(work: Any) -> list[str]:
        events: list[InventoryChanged] = in_transaction(engine, work)
        return [f"{e.kind} {e.available}" for e in events]

    in_transaction(engine, lambda conn: conn.execute(text(
        "INSERT INTO warehouses (code, name, province, city) VALUES ('WH-HZ', 'HZ', 'P', 'C')")))
    assert step(lambda conn: set_level(conn, "WH-HZ", "SKU", 20, safety=5, key="set:1", at=AT,
                                       source="test")) == ["stock_set 20"]

    def reserve(units: int) -> Any:
        def work(conn: Any) -> list[InventoryChanged]:
            conn.execute(text("UPDATE stock SET available = available - :q, "
                              "reserved = reserved + :q"), {"q": units})
            return check_low(conn, "WH-HZ", ["SKU"], at=AT)
        return work

    assert step(reserve(16)) == ["low_stock 4"]
    assert step(reserve(2)) == []
    assert step(reserve(-8)) == []
    assert step(reserve(0)) == []
    assert step(reserve(7)) == ["low_stock 3"]
    assert _rows(engine, "SELECT low FROM stock") == [{"low": True}]


def test_low_stock_from_the_command_line_alerts_once_and_again_after_recovering(
    settings: Settings,
) -> None:
    _loaded()
    assert "LOW STOCK: WH-GZ/MUG available 3" in _ok(
        "stock", "set", "WH-GZ", "MUG", "3", "--safety", "5")
    assert "LOW STOCK" not in _ok("stock", "adjust", "WH-GZ", "MUG", "1", "--reason", "found")
    assert "WH-GZ" in (low := _ok("stock", "low")) and "available      4" in low and "LOW" in low
    _ok("stock", "adjust", "WH-GZ", "MUG", "+6", "--reason", "received")
    assert json.loads(run_cli("stock", "low", "--json").stdout) == []
    assert "LOW STOCK" in _ok("stock", "safety", "WH-GZ", "MUG", "12")
    kinds = [e.kind for e in _events(settings, expect=5)]
    assert kinds == ["stock_set", "low_stock", "stock_adjusted", "stock_adjusted", "low_stock"]


@pytest.mark.parametrize(("args", "message"), [
    (["stock", "adjust", "WH-NOPE", "SKU", "3", "--reason", "x"], "no warehouse 'WH-NOPE'"),
    (["stock", "safety", "WH-NOPE", "SKU", "3"], "no warehouse 'WH-NOPE'"),
    (["stock", "adjust", "WH-HZ", "SKU", "0", "--reason", "x"], "an adjustment of 0 changes"),
    (["stock", "safety", "WH-HZ", "SKU", "3"], "WH-HZ has no stock row for 'SKU'"),
])
def test_stock_misuse_gets_a_plain_message(
    settings: Settings, args: list[str], message: str
) -> None:
    _ok("warehouses", "add", "WH-HZ", "--province", "浙江省", "--city", "杭州市")
    assert message in _refused(*args)


@pytest.mark.parametrize("command", [["warehouses", "load"], ["warehouses", "list"],
                                     ["stock", "adjust"], ["stock", "safety"], ["stock", "import"],
                                     ["stock", "show"], ["stock", "low"]], ids=" ".join)
def test_every_master_data_command_explains_itself(command: list[str]) -> None:
    result = run_cli(*command, "--help", timeout=60)
    assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr
