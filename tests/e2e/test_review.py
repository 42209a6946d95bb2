"""Suspected duplicates worked from the CLI: release and cancel flow on to final statuses."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from runtime.settings import Settings
from schemas.base import SHANGHAI
from tests.builders import one_purchase
from tests.conftest import run_cli

T0 = datetime(2026, 11, 11, 10, 21, 20, tzinfo=SHANGHAI)
T1 = T0 + timedelta(hours=1)  # a second, unrelated pair: outside the first pair's window


def _ok(result: object) -> object:
    assert getattr(result, "returncode", None) == 0, getattr(result, "stderr", "")
    return result


def test_release_and_cancel_through_the_cli(settings: Settings, engine: Engine, tmp_path: Path
                                            ) -> None:
    _ok(run_cli("warehouses", "add", "WH-SZ", "--province", "江苏省", "--city", "苏州市"))
    for sku in ("DY-MUG-350-BLU", "TEA-GIFT-01"):
        _ok(run_cli("stock", "set", "WH-SZ", sku, "10"))
    douyin, pdd = tmp_path / "douyin.json", tmp_path / "pdd.json"
    douyin.write_text(json.dumps([one_purchase("douyin", order_id="6930000000000000001",
                                               paid_at=T0),
                                  one_purchase("douyin", order_id="6930000000000000002",
                                               paid_at=T1)]))
    pdd.write_text(json.dumps([one_purchase("pdd", order_id="261111-100000000000001",
                                            paid_at=T0 + timedelta(minutes=1)),
                               one_purchase("pdd", order_id="261111-100000000000002",
                                            paid_at=T1 + timedelta(minutes=2))]))
    _ok(run_cli("ingest", "douyin", str(douyin), "--shop", "dy"))
    _ok(run_cli("drain", "--timeout", "180"))  # Douyin first: its orders go on
    _ok(run_cli("ingest", "pdd", str(pdd), "--shop", "pdd"))
    _ok(run_cli("drain", "--timeout", "180"))

    queue = json.loads(_ok(run_cli("review", "list", "--json")).stdout)  # type: ignore[attr-defined]
    assert sorted((q["order_id"], q["matched_order_id"]) for q in queue) == [
        ("PDD261111-100000000000001", "DY6930000000000000001"),
        ("PDD261111-100000000000002", "DY6930000000000000002")]

    _ok(run_cli("review", "release", "PDD261111-100000000000001", "--by", "alice",
                "--reason", "two buyers in one office"))
    _ok(run_cli("review", "cancel", "PDD261111-100000000000002",
                "--as-duplicate-of", "DY6930000000000000002", "--by", "bob"))
    _ok(run_cli("drain", "--timeout", "180"))

    again = _ok(run_cli("review", "release", "PDD261111-100000000000001", "--by", "alice",
                        "--reason", "again"))
    assert "already released" in again.stderr  # type: ignore[attr-defined]
    changed = run_cli("review", "cancel", "PDD261111-100000000000001",
                      "--as-duplicate-of", "DY6930000000000000001", "--by", "carol")
    assert changed.returncode == 2 and "already released" in changed.stderr
    unknown = run_cli("review", "release", "PDD9", "--by", "alice", "--reason", "x")
    assert unknown.returncode == 2 and "not in the review queue" in unknown.stderr

    with engine.connect() as conn:
        status = dict(conn.execute(text("SELECT id, status FROM orders")).all())
        duplicate_of = conn.execute(text(
            "SELECT duplicate_of FROM orders WHERE id = 'PDD261111-100000000000002'")).scalar()
        reserved = dict(conn.execute(text("SELECT sku, reserved FROM stock")).all())
        decided = dict(conn.execute(text("SELECT order_id, decided_by FROM review_queue")).all())
    assert status == {"DY6930000000000000001": "allocated", "DY6930000000000000002": "allocated",
                      "PDD261111-100000000000001": "allocated",
                      "PDD261111-100000000000002": "duplicate"}
    assert duplicate_of == "DY6930000000000000002"
    assert reserved == {"DY-MUG-350-BLU": 6, "TEA-GIFT-01": 3}  # three orders, none twice
    assert decided == {"PDD261111-100000000000001": "alice", "PDD261111-100000000000002": "bob"}
    assert json.loads(_ok(run_cli("review", "list", "--json")).stdout) == []  # type: ignore[attr-defined]
