from __future__ import annotations

import importlib.util
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from prometheus_client import CollectorRegistry

from ingest import metrics as ingest_metrics
from runtime.kpi import DLQ_STAGES, KpiCollector, Kpis, bounds
from runtime.metrics import build_stage_metrics
from runtime.settings import KpiSettings, Settings
from runtime.stages import STAGES

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
KPI_TITLES = ("待处理订单数 Pending orders", "异常订单占比 Anomaly ratio",
              "当日发货完成率 Same-day ship rate", "履约周期 Fulfillment cycle")

# Metric names of the contract that no module registered yet when this was written, as
# exposition names (counters with `_total`). Empty now: every name a panel uses is found in the
# registries built below. Add a name here only while its code is being written.
PENDING_CONTRACT: frozenset[str] = frozenset()
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
            "summary": ("", "_count", "_sum"), "info": ("_info",)}


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboard",
                                                  GRAFANA / "build_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _exposed(registry: CollectorRegistry) -> set[str]:
    return {family.name + suffix for family in registry.collect()
            for suffix in SUFFIXES[family.type]}


def _kpi_registry() -> CollectorRegistry:
    """The KPI collector after one reading of an empty projection."""
    empty = Kpis(bounds=bounds(datetime.now(UTC), KpiSettings()), pending={}, window_orders=0,
                 window_held=0, window_dead_letters=0, window_duplicates=0, due=0,
                 shipped_due=0, cycle_hours=(), holds={}, low_stock_skus=0, orders_today={},
                 dead_letters={})
    collector = KpiCollector(lambda: empty, DLQ_STAGES)
    assert collector.refresh()
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def _names_in_code() -> set[str]:
    """Every exposition name the stages, the runner, ingest and the KPI collector register."""
    names: set[str] = set()
    settings = Settings()
    for stage, entry in STAGES.items():
        registry = CollectorRegistry()
        build_stage_metrics(stage, registry)
        entry.build(settings, registry)
        names |= _exposed(registry)
    registry = CollectorRegistry()
    ingest_metrics.build(registry)
    return names | _exposed(registry) | _exposed(_kpi_registry())


def _panels() -> list[dict[str, Any]]:
    board = json.loads((GRAFANA / "dashboards" / "orderhub.json").read_text(encoding="utf-8"))
    return [p for p in board["panels"] if p["type"] != "row"]


def _metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\borderhub_[a-z0-9_]+", expr))


def test_the_committed_dashboard_is_exactly_what_the_builder_makes_now() -> None:
    committed = (GRAFANA / "dashboards" / "orderhub.json").read_text(encoding="utf-8")
    assert committed == _builder().render(), (
        "run .venv/bin/python deploy/grafana/build_dashboard.py and commit the result")


def test_the_four_merchant_kpis_come_first_with_chinese_and_english_titles() -> None:
    first = [p["title"] for p in _panels()[:4]]
    assert [t for t, kpi in zip(first, KPI_TITLES, strict=True) if t.startswith(kpi)] == first
    board = json.loads((GRAFANA / "dashboards" / "orderhub.json").read_text(encoding="utf-8"))
    assert board["panels"][0]["type"] == "row"
    assert all(p["gridPos"]["y"] == 1 for p in _panels()[:4])


def test_every_panel_title_is_bilingual() -> None:
    for panel in _panels():
        title = panel["title"]
        assert re.search(r"[\u4e00-\u9fff]", title), title
        assert re.search(r"[A-Za-z]{3,}", title), title


def test_every_metric_a_panel_queries_is_in_the_contract() -> None:
    contract = _names_in_code() | PENDING_CONTRACT
    used = {m for p in _panels() for t in p["targets"] for m in _metrics_in(t["expr"])}
    assert used, "no panel queries an orderhub metric"
    assert sorted(used - contract) == []


def test_the_metric_names_are_collected_from_the_code_as_prometheus_exposes_them() -> None:
    code = _names_in_code()
    for stage in STAGES:
        assert {f"orderhub_{stage}_consumed_total", f"orderhub_{stage}_dead_lettered_total",
                f"orderhub_{stage}_batch_seconds_bucket"} <= code
    assert "orderhub_ingest_received_total" in code
    assert {"orderhub_kpi_pending_orders", "orderhub_kpi_fulfillment_cycle_hours_bucket",
            "orderhub_notify_sent_total", "orderhub_dedup_latency_seconds_bucket"} <= code


def test_the_dashboard_covers_pipeline_health_for_every_stage() -> None:
    exprs = " ".join(t["expr"] for p in _panels() for t in p["targets"])
    for stage in STAGES:
        for metric in ("consumed_total", "produced_total", "dead_lettered_total",
                       "consumer_lag", "latency_seconds_bucket"):
            assert f"orderhub_{stage}_{metric}" in exprs
    for kind in ("sent", "failed", "deferred", "skipped"):
        assert f"orderhub_notify_{kind}_total" in exprs
    for kpi in ("orders_today", "holds", "duplicate_ratio", "low_stock_skus", "dead_letters"):
        assert f"orderhub_kpi_{kpi}" in exprs


def test_every_panel_queries_the_provisioned_prometheus_datasource() -> None:
    provisioned = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uid = re.search(r"^\s*uid:\s*(\S+)", provisioned, re.M)
    assert uid is not None
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": uid.group(1)}
        assert all(t["datasource"]["uid"] == uid.group(1) for t in panel["targets"])


def test_panel_ids_are_unique_and_panels_never_overlap() -> None:
    board = json.loads((GRAFANA / "dashboards" / "orderhub.json").read_text(encoding="utf-8"))
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, p["title"]
        cells |= mine


def test_the_dashboard_provider_loads_the_directory_grafana_mounts() -> None:
    import yaml

    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "orderhub.yml")
                              .read_text())["providers"][0]
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
