"""Allocation worked from the CLI on the real broker and Postgres: nearest warehouse, approval,
backorder release when stock arrives, shipment, return and QC."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.events import InventoryChanged
from schemas.topics import INVENTORY
from tests.builders import FIXTURES, one_purchase
from tests.conftest import run_cli
from tests.stagekit import KafkaIO

T0 = datetime(2026, 11, 11, 9, 0, tzinfo=SHANGHAI)
MUG, TEA = ("TQF-MUG-WHT", 1, "39.00"), ("TQF-TEE-RED-110", 2, "59.00")


def _ok(*args: str) -> Any:
    result = run_cli(*args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _orders(tmp_path: Path, name: str, orders: list[dict[str, Any]]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(orders, ensure_ascii=False))
    return str(path)


def _douyin(order_id: str, minutes: int, skus: tuple[tuple[str, int, str], ...],
            city: tuple[str, str] = ("浙江省", "杭州市"), **changes: Any) -> dict[str, Any]:
    order = one_purchase("douyin", order_id=order_id, paid_at=T0 + timedelta(minutes=minutes),
                         province=city[0], city=city[1], skus=skus)
    order.update(changes)
    return order


def _status(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, status FROM orders")).all())


def _stock(engine: Engine) -> dict[tuple[str, str], tuple[int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT warehouse, sku, on_hand, reserved, available FROM stock"))
        return {(w, s): (oh, r, a) for w, s, oh, r, a in rows}


def test_nearest_warehouse_approval_backorder_and_return(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    _ok("warehouses", "load", str(FIXTURES / "master" / "warehouses.yaml"))
    _ok("stock", "import", str(FIXTURES / "master" / "stock.csv"))
    _ok("stock", "set", "WH-CD", "TQF-MUG-WHT", "0")  # no mugs anywhere yet
    big = ("TQF-TEE-RED-110", 1, "5200.00")  # a limited edition: over the ¥5,000 threshold
    _ok("ingest", "douyin", _orders(tmp_path, "first", [
        _douyin("6930000000000000101", 0, (TEA,), city=("广东省", "深圳市")),  # → Guangzhou
        _douyin("6930000000000000102", 1, (TEA,)),                            # → Hangzhou
        _douyin("6930000000000000103", 2, (big,), city=("江苏省", "南京市")),   # approval
        _douyin("6930000000000000104", 3, (big,), city=("江苏省", "苏州市")),   # approval
        _douyin("6930000000000000105", 4, (MUG,)),                            # backordered
    ]), "--shop", "dy")
    _ok("drain", "--timeout", "240")
    assert _status(engine) == {
        "DY6930000000000000101": "allocated", "DY6930000000000000102": "allocated",
        "DY6930000000000000103": "approval_hold", "DY6930000000000000104": "approval_hold",
        "DY6930000000000000105": "backordered"}
    shown = json.loads(_ok("orders", "show", "DY6930000000000000101", "--json").stdout)
    assert [s["warehouse"] for s in shown["shipments"]] == ["WH-GZ"]  # nearest to Shenzhen
    assert shown["allocation"]["rule"] in ("nearest", "single_complete")
    assert {c["code"] for c in shown["allocation"]["candidates"]} >= {"WH-HZ", "WH-GZ"}
    assert json.loads(_ok("orders", "show", "DY6930000000000000102", "--json").stdout)[
        "shipments"][0]["warehouse"] == "WH-HZ"

    queue = json.loads(_ok("approvals", "list", "--json").stdout)
    assert sorted(a["order_id"] for a in queue) == ["DY6930000000000000103",
                                                    "DY6930000000000000104"]
    _ok("approvals", "approve", "DY6930000000000000103", "--by", "manager-li")
    _ok("approvals", "reject", "DY6930000000000000104", "--by", "manager-li",
        "--reason", "buyer unreachable")
    _ok("stock", "adjust", "WH-CD", "TQF-MUG-WHT", "5", "--reason", "purchase order arrived")
    _ok("drain", "--timeout", "240")
    again = _ok("approvals", "approve", "DY6930000000000000103", "--by", "manager-li")
    assert "already approved" in again.stderr
    turned = run_cli("approvals", "approve", "DY6930000000000000104", "--by", "manager-li")
    assert turned.returncode == 2 and "already rejected" in turned.stderr
    status = _status(engine)
    assert status["DY6930000000000000103"] == "allocated"
    assert status["DY6930000000000000104"] == "cancelled"
    assert status["DY6930000000000000105"] == "allocated"  # released when the mugs arrived
    stock = _stock(engine)
    # Red tees: 101 (2 from GZ), 102 (2 from HZ), 103 (1, approved, HZ); 104's unit came back.
    assert stock[("WH-HZ", "TQF-TEE-RED-110")] == (40, 3, 37)
    assert stock[("WH-CD", "TQF-MUG-WHT")] == (5, 1, 4)

    # The channel reports 102 shipped, then refunded: reserved units leave stock, a return opens.
    shipped = _douyin("6930000000000000102", 1, (TEA,), order_status=3, main_status=3,
                      update_time=int((T0 + timedelta(hours=5)).timestamp()))
    _ok("ingest", "douyin", _orders(tmp_path, "shipped", [shipped]), "--shop", "dy")
    _ok("drain", "--timeout", "240")
    assert _stock(engine)[("WH-HZ", "TQF-TEE-RED-110")] == (38, 1, 37)
    refunded = {**shipped, "order_status": 4, "main_status": 21,
                "update_time": int((T0 + timedelta(days=3)).timestamp())}
    _ok("ingest", "douyin", _orders(tmp_path, "refunded", [refunded]), "--shop", "dy")
    _ok("drain", "--timeout", "240")
    returns = json.loads(_ok("returns", "list", "--json").stdout)
    assert [(r["order_id"], r["state"]) for r in returns] == [("DY6930000000000000102",
                                                              "requested")]
    graded_early = run_cli("returns", "qc", "DY6930000000000000102", "--grade", "A",
                           "--by", "qc-wang")
    assert graded_early.returncode == 2 and "not been received" in graded_early.stderr
    _ok("returns", "receive", "DY6930000000000000102")
    _ok("returns", "qc", "DY6930000000000000102", "--grade", "A", "--by", "qc-wang")
    _ok("drain", "--timeout", "240")
    assert _stock(engine)[("WH-HZ", "TQF-TEE-RED-110")] == (40, 1, 39)  # sellable again
    assert _status(engine)["DY6930000000000000102"] == "returned"

    with engine.connect() as conn:
        kinds = [k for (k,) in conn.execute(text(
            "SELECT kind FROM stock_movements ORDER BY id"))]
    assert "shipped" in kinds and "returned_sellable" in kinds and "stock_adjusted" in kinds
    events = [InventoryChanged.model_validate_json(r.value or b"")
              for r in KafkaIO(settings).read(INVENTORY, 3)]
    assert {"stock_adjusted", "shipped", "returned_sellable"} <= {e.kind for e in events}
