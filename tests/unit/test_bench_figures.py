from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from bench.cpu import CpuMeter, descendants, read_proc
from bench.latency import plan
from bench.latency_report import segments, step_figures
from bench.scale_report import ratios

CT = TIMESTAMP_CREATE_TIME


def test_latency_percentiles_are_output_time_minus_received_at() -> None:
    received = {f"o{i}": 100.0 + i for i in range(1000)}
    stamps = {f"o{i}": (100.0 + i + (i + 1) / 1000, CT) for i in range(1000)}
    f = step_figures(received, stamps)
    assert f["out"] == f["produced"] == 1000
    assert f["min_s"] == pytest.approx(0.001)
    assert f["p50_s"] == pytest.approx(0.5005, abs=1e-3)
    assert f["p99_s"] == pytest.approx(0.990, abs=2e-3)
    assert f["p99_9_s"] == pytest.approx(0.999, abs=2e-3)
    assert f["max_s"] == pytest.approx(1.0)
    assert f["timestamp"] == "CreateTime"


def test_a_step_whose_latency_grows_did_not_keep_up() -> None:
    received = {f"o{i}": float(i) / 100 for i in range(500)}
    steady = step_figures(received, {k: (at + 0.3, CT) for k, at in received.items()})
    growing = step_figures(received, {k: (at + 0.3 + at / 2, CT) for k, at in received.items()})
    assert steady["kept_up"]
    assert steady["drain_s"] == pytest.approx(0.3)
    assert not growing["kept_up"]
    assert growing["last_fifth_p50_s"] > growing["first_fifth_p50_s"] + 1


def test_a_step_with_an_order_missing_did_not_keep_up() -> None:
    received = {f"o{i}": float(i) for i in range(10)}
    stamps = {k: (at + 0.1, CT) for k, at in received.items() if k != "o3"}
    f = step_figures(received, stamps)
    assert (f["out"], f["produced"], f["kept_up"]) == (9, 10, False)


def test_segments_split_the_latency_between_the_stages() -> None:
    received = {"a": 10.0, "b": 11.0, "c": 12.0}
    first = {k: (at + 0.5, CT) for k, at in received.items()}
    second = {k: (at + 0.75, CT) for k, at in received.items()}
    spent = segments(received, [("orders.normalized", first), ("orders.accepted", second)])
    assert spent["orders.raw → orders.normalized"]["p50_s"] == pytest.approx(0.5)
    assert spent["orders.normalized → orders.accepted"]["p99_s"] == pytest.approx(0.25)


def test_plan_has_a_step_per_rate_and_a_burst_last() -> None:
    steps = plan([500, 1000], seconds=10, burst=3000)
    assert [(s.rate, s.count) for s in steps] == [(500, 5000), (1000, 10000), (None, 3000)]
    assert [s.rate for s in plan([500], 10, 0)] == [500]


def test_scaling_ratio_is_many_over_one() -> None:
    def run(steady: float, total: float) -> dict[str, object]:
        return {"timing": {"steady_rate": steady, "total_rate": total}}

    runs = {"dedup x1": run(1000, 400), "dedup x2": run(1500, 500), "hop x1": run(8000, 900),
            "hop x2": run(8000, 1800)}
    r = ratios(runs, "dedup", 2)
    assert r["dedup"] == {"steady_rate": 1.5, "total_rate": 1.25}
    assert r["hop"] == {"steady_rate": 1.0, "total_rate": 2.0}


def test_cpu_meter_counts_a_busy_child_and_keeps_it_after_it_exits() -> None:
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    child = subprocess.Popen([sys.executable, "-c", busy])
    meter = CpuMeter(lambda procs: {"child": descendants(procs, [child.pid])})
    while child.poll() is None:
        meter.sample()
        time.sleep(0.02)
    used = meter.sample().cpu_s
    assert 0.25 <= used["child"] <= 1.5
    assert used["machine"] >= used["child"] - 0.05


def test_read_proc_sees_this_process_and_not_a_gone_one() -> None:
    me = read_proc(os.getpid())
    assert me is not None and me.cpu_s > 0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert read_proc(gone.pid) is None
