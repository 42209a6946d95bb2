from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from runtime.db import in_transaction
from runtime.settings import Settings
from schemas.base import SHANGHAI
from tests.conftest import REPO, run_cli


def _prepare(engine: Engine) -> None:
    now = datetime.now(SHANGHAI)

    def work(conn: Connection) -> None:
        for i, (channel, status, hold) in enumerate([
            ("taobao", "paid", None), ("taobao", "allocated", None),
            ("jd", "backordered", '{"reason": "out_of_stock", "details": {}}'),
            ("pdd", "allocated", None),
        ]):
            conn.execute(text(
                "INSERT INTO orders (id, channel, shop, native_id, native_status, status, "
                "status_at, created_at, paid_at, updated_at, currency, paid_amount, paid_cny, "
                "document, hold) VALUES (:id, :c, 's', :id, 'x', :s, :t, :t, :t, :t, 'CNY', 1, "
                "1, '{}', CAST(:h AS jsonb))"),
                {"id": f"O{i}", "c": channel, "s": status, "t": now, "h": hold})
        conn.execute(text(
            "INSERT INTO dead_letters (stage, topic, partition, \"offset\", error_class, "
            "message, original) VALUES ('normalize', 'orders.raw', 0, 7, 'InvalidInput', 'm', "
            "'\\x00')"))

    in_transaction(engine, work)


def test_status_json_gives_the_kpis_and_every_stages_lag_and_dead_letters(
    settings: Settings, engine: Engine,
) -> None:
    _prepare(engine)

    result = run_cli("status", "--json", timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["pending_orders"] == {"pending_payment": 0, "paid": 1, "review_hold": 0,
                                      "approval_hold": 0, "backordered": 1, "allocated": 2}
    assert data["pending_total"] == 4
    assert {k: n for k, n in data["orders_today"].items() if n} == {"taobao": 2, "jd": 1,
                                                                     "pdd": 1}
    assert data["holds"]["out_of_stock"] == 1
    assert data["anomalies"] == {"orders": 4, "held": 1, "dead_letters": 1}
    assert data["anomaly_ratio"] == 2 / 5
    assert data["same_day"]["due"] == 4 and data["same_day_ship_ratio"] == 0.0
    assert data["pipeline"] == [
        {"stage": "ingest", "lag": None, "dead_letters": 0},
        {"stage": "normalize", "lag": 0, "dead_letters": 1},
        {"stage": "dedup", "lag": 0, "dead_letters": 0},
        {"stage": "allocate", "lag": 0, "dead_letters": 0},
        {"stage": "notify", "lag": 0, "dead_letters": 0},
    ]


def test_status_once_prints_one_frame_with_the_merchant_kpis_in_chinese_and_english(
    settings: Settings, engine: Engine,
) -> None:
    _prepare(engine)

    result = run_cli("status", "--once", timeout=120,
                     env={**os.environ, "COLUMNS": "160", "TERM": "dumb"})

    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for label in ("待处理订单数 pending orders", "异常订单占比 anomaly ratio",
                  "当日发货完成率 same-day ship rate", "履约周期 fulfillment cycle"):
        assert label in out
    assert out.index("待处理订单数") < out.index("异常订单占比") < out.index("当日发货完成率") \
        < out.index("履约周期") < out.index("pipeline")
    assert "paid 1 · backordered 1 · allocated 2" in out
    assert "40.0%" in out  # anomaly ratio: (1 held + 1 dead letter) / (4 orders + 1)
    assert "0 of 4 due shipped" in out
    pipeline = out[out.index("pipeline"):]
    rows = [[cell.strip() for cell in ln.split("│")[1:-1]] for ln in pipeline.splitlines()
            if ln.startswith("│")]
    assert rows == [["ingest", "-", "0"], ["normalize", "0", "1"], ["dedup", "0", "0"],
                    ["allocate", "0", "0"], ["notify", "0", "0"]]


def test_status_without_a_running_hub_says_how_to_start_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERHUB_")}

    result = run_cli("status", "--once", cwd=tmp_path, env=env, timeout=60)

    assert result.returncode == 2
    assert "no running orderhub found" in result.stderr and "orderhub up" in result.stderr


def test_status_refreshes_live_until_ctrl_c_and_then_exits_cleanly(
    settings: Settings, engine: Engine,
) -> None:
    _prepare(engine)
    live = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "status", "--interval", "0.5"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "160"},
        # As when started from a script with `&`: SIGINT arrives ignored, yet Ctrl-C must work
        # (a suite run in the background once hung here for that reason).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(6)  # start-up and a few refreshes

    live.send_signal(signal.SIGINT)
    try:
        out, err = live.communicate(timeout=30)
    finally:
        live.kill()  # never leave it running for the tests after this one

    assert live.returncode == 0, err.decode()[-3000:]
    assert "待处理订单数 pending orders" in out.decode() and b"Traceback" not in err
