"""The fault-injection harness's short variant (bench/faults.py): its own broker and embedded
Postgres, every stage a separate process, SIGKILLs, a graceful restart, a kill during a
rebalance and a Postgres outage while a multi-channel load goes through."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bench.faults import SHORT, STAGE_NAMES, TWIN, Params, report, run_faults
from bench.faults_checks import both_halves_went_on, lost_and_extra, oversold
from bench.faults_load import Input, Load


@pytest.mark.timeout(420)
def test_killing_stages_and_stopping_postgres_under_load_loses_doubles_and_oversells_nothing(
    tmp_path: Path,
) -> None:
    params = Params(**{**SHORT.__dict__, "min_kills_per_stage": 1})

    outcome = run_faults(params, keep=tmp_path / "faults")

    text = report(outcome)
    assert [(c.name, c.violations) for c in outcome.checks if not c.ok] == [], text
    assert all(c.checked > 0 for c in outcome.checks), text
    kills = {s: outcome.faults.get(f"sigkill {s}", 0) for s in STAGE_NAMES}
    assert min(kills.values()) >= 1, text
    assert outcome.faults[f"sigkill during rebalance {TWIN}"] >= 1, text
    assert outcome.faults["postgres stopped"] == 1, text
    assert sum(n for k, n in outcome.faults.items() if k.startswith("sigterm+restart")) >= 1
    assert {"valid", "exact_duplicate", "suspected_duplicate", "high_value", "stock_out",
            "status_update", "return", "malformed"} <= set(outcome.inputs), text
    assert (tmp_path / "faults" / "inputs.jsonl").read_text().count("\n") == sum(
        outcome.inputs.values())


def test_the_checks_count_a_lost_order_an_unknown_one_an_oversold_sku_and_a_pair_both_gone_on(
    engine: Engine,
) -> None:
    def order(oid: str) -> Input:
        return Input("orders.raw", oid, "pdd", "valid", oid, b"{}")

    load = Load([], {"SKU-1": 2}, [("PDD1", "DY1")], [],
                logged=[order("PDD1"), order("DY1"), order("PDD2")])
    status = {"PDD1": "allocated", "DY1": "allocated", "PDD2": "paid", "TB9": "allocated"}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO warehouses (code, name, province, city) "
                          "VALUES ('WH', 'w', '浙江省', '杭州市')"))
        for line, qty in ((1, 2), (2, 1)):
            conn.execute(text(
                "INSERT INTO allocations (order_id, line_no, warehouse, sku, quantity, rule, "
                "reason, reserved_at) VALUES ('PDD1', :l, 'WH', 'SKU-1', :q, 'r', 'x', now())"),
                {"l": line, "q": qty})

    lost, extra = lost_and_extra(load, status)
    sold, _stock_rows = oversold(engine, load.stock)
    both = both_halves_went_on(load, status)

    assert (lost.violations, lost.example) == (1, "PDD2:paid")
    assert (extra.violations, extra.example) == (1, "TB9")
    assert (sold.violations, sold.example) == (1, "('SKU-1', 3, 2)")
    assert both.violations == 1
