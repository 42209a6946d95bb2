from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from allocate.projection import add_warehouse, set_stock
from ingest.demo import required_stock
from runtime.db import in_transaction
from runtime.settings import Settings
from schemas.base import SHANGHAI
from tests.builders import FIXTURES, demo_orders
from tests.conftest import REPO, run_cli

N = 1000


def _mixed_orders(n: int) -> list[dict[str, Any]]:
    """Two shops (CNY at +08:00, USD at -05:00), 1-3 lines, discounts, notes, payment states."""
    orders = [payload for _shop, payload in demo_orders(n, seed=11)]
    for i, payload in enumerate(orders):
        if i % 7 == 0:
            payload["financial_status"] = "authorized"
    return orders


def _write_jsonl(path: Path, orders: list[dict[str, Any]], bad_line: str | None = None) -> Path:
    lines = [json.dumps(o, ensure_ascii=False) for o in orders]
    if bad_line is not None:
        lines.insert(len(lines) // 2, bad_line)
    path.write_text("\n".join(lines) + "\n")
    return path


def _stock_for(engine: Engine, orders: list[dict[str, Any]]) -> None:
    def work(conn: Any) -> None:
        add_warehouse(conn, "WH-HZ", "杭州仓", "浙江省", "杭州市", 10)
        for sku, qty in required_stock(("s", o) for o in orders).items():
            set_stock(conn, "WH-HZ", sku, qty)
    in_transaction(engine, work)


def _counts(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        one = lambda sql: conn.execute(text(sql)).scalar()  # noqa: E731
        return {
            "orders": one("SELECT count(*) FROM orders"),
            "allocated": one("SELECT count(*) FROM orders WHERE status = 'allocated'"),
            "allocations": one("SELECT count(DISTINCT order_id) FROM allocations"),
            "reserved": one("SELECT sum(reserved) FROM stock"),
            "allocated_units": one("SELECT sum(quantity) FROM allocations"),
            "sent": one("SELECT count(*) FROM notifications WHERE state = 'sent'"),
            "notifications": one("SELECT count(*) FROM notifications"),
            "dead_letters": one("SELECT count(*) FROM dead_letters"),
        }


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_thousand_orders_go_through_ingest_and_drain_exactly_once(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    orders = _mixed_orders(N)
    _stock_for(engine, orders)
    path = _write_jsonl(tmp_path / "orders.jsonl", orders, bad_line='{"id": 1, "line_items": [')

    ingested = _ok(run_cli("ingest", "shopify", str(path), "--shop", "tongqufang"))
    assert f"{N} order(s) written to orders.raw; 1 rejected" in ingested.stderr
    _ok(run_cli("drain", "--timeout", "240"))

    counts = _counts(engine)
    units = sum(required_stock(("s", o) for o in orders).values())
    assert counts == {"orders": N, "allocated": N, "allocations": N, "reserved": units,
                      "allocated_units": units, "sent": N, "notifications": N,
                      "dead_letters": 1}
    dlq = json.loads(_ok(run_cli("dlq", "list", "--json")).stdout)
    assert [(d["stage"], d["error_class"]) for d in dlq] == [("ingest", "InvalidInput")]
    assert "invalid JSON" in dlq[0]["message"]

    # The same file again: every order is a redelivery, nothing doubles.
    _ok(run_cli("ingest", "shopify", str(path), "--shop", "tongqufang"))
    _ok(run_cli("drain", "--timeout", "240"))
    assert _counts(engine) == counts

    listed = json.loads(_ok(run_cli("orders", "list", "--json", "--limit", "5000")).stdout)
    assert len(listed) == N and {o["status"] for o in listed} == {"allocated"}


def test_orders_show_prints_the_canonical_order_with_what_later_stages_decided(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    orders = _mixed_orders(3)
    _stock_for(engine, orders)
    _ok(run_cli("ingest", "shopify", str(_write_jsonl(tmp_path / "o.json", orders))))
    _ok(run_cli("drain", "--timeout", "120"))
    order_id = f"SHOP{orders[0]['id']}"
    view = json.loads(_ok(run_cli("orders", "show", order_id, "--json")).stdout)
    canonical = ["id", "channel", "shop", "native_id", "native_status", "status", "created_at",
                 "paid_at", "updated_at", "currency", "goods_amount", "shipping_amount",
                 "discount_amount", "paid_amount", "paid_cny", "lines", "recipient",
                 "buyer_note", "flags"]
    assert list(view)[: len(canonical)] == canonical
    assert view["status"] == "allocated" and view["paid_at"].endswith("+08:00")
    assert view["shipments"][0]["warehouse"] == "WH-HZ"
    assert [n["state"] for n in view["notifications"]] == ["sent"]
    assert [e["kind"] for e in view["events"]] == ["normalized", "accepted", "allocated"]


def _drain_process(cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "runtime.cli", "drain", "--timeout", "240"],
                            cwd=cwd, env=dict(os.environ), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_killing_drain_mid_run_and_running_it_again_loses_and_doubles_nothing(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    orders = _mixed_orders(N)
    _stock_for(engine, orders)
    _ok(run_cli("ingest", "shopify", str(_write_jsonl(tmp_path / "o.jsonl", orders))))

    drain = _drain_process(REPO)
    deadline = time.monotonic() + 120
    while _counts(engine)["allocated"] < N // 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    before_kill = _counts(engine)
    drain.send_signal(signal.SIGKILL)
    drain.wait(10)
    assert 0 < before_kill["orders"], "drain was killed before it processed anything"
    assert before_kill["sent"] < N, "drain finished before it could be killed"

    _ok(run_cli("drain", "--timeout", "240"))
    counts = _counts(engine)
    units = sum(required_stock(("s", o) for o in orders).values())
    assert counts == {"orders": N, "allocated": N, "allocations": N, "reserved": units,
                      "allocated_units": units, "sent": N, "notifications": N,
                      "dead_letters": 0}


def test_merchants_csv_exports_become_canonical_orders_with_their_own_column_mappings(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_dir = FIXTURES / "csv"
    for line in (csv_dir / "acme_settings.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name == "ORDERHUB_CSV__MAPPINGS":  # plus a layout for a gb18030 Chinese export
            value = json.dumps({**json.loads(value), "tmall-export": {"encoding": "gb18030"}})
        elif name == "ORDERHUB_CSV__SHOPS":
            value = json.dumps({**json.loads(value), "tmall": "tmall-export"})
        monkeypatch.setenv(name, value)
    for path, shop in (("orders_en.csv", "site"), ("acme_orders.csv", "acme-store"),
                       ("orders_zh_gb18030.csv", "tmall")):
        result = _ok(run_cli("ingest", "csv", str(csv_dir / path), "--shop", shop))
        assert "rejected" not in result.stderr, result.stderr
    _ok(run_cli("drain", "--timeout", "180"))
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(text(
            "SELECT id, shop, status, currency, paid_amount, created_at, document FROM orders"))}
        letters = conn.execute(text("SELECT message FROM dead_letters")).scalars().all()
    assert letters == []
    assert {i[:4] for i in rows} >= {"CSVA", "ACME", "CSV6"}
    acme = rows["ACME1077"]  # fen, UTC times and its own status words, per its mapping
    assert (acme.shop, acme.status, acme.currency) == ("acme-store", "shipped", "USD")
    assert acme.created_at.astimezone(SHANGHAI).isoformat() == "2026-11-11T00:00:00+08:00"
    zh = rows["CSV612055618715866263"]  # 19 digits kept exact, gb18030 decoded
    assert zh.document["status"] == "paid" and len(zh.document["lines"]) == 2
    assert zh.status == "backordered"  # paid, and no warehouse holds its SKUs here
    assert zh.document["recipient"]["province"] == "浙江省"
