"""Builds the orderhub Grafana dashboard from code (grafana-foundation-sdk) into dashboards/.

Run from the repository root:  .venv/bin/python deploy/grafana/build_dashboard.py
The generated JSON is committed; tests/unit/test_dashboard.py fails when it drifts from this file.
Row 1 holds the four KPIs merchants ask for first; pipeline health and per-channel volume follow.
Every query names a metric from the contract in deploy/README.md (counters end in `_total`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, gauge, stat, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

UID = "orderhub"
OUTPUT = Path(__file__).resolve().parent / "dashboards" / "orderhub.json"
# The provisioned datasource (provisioning/datasources/prometheus.yml) has this uid.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="prometheus")
# The faust stages, in pipeline order (runtime/stages.py STAGES).
STAGES = ("normalize", "dedup", "allocate", "notify")
RATE = "[$__rate_interval]"
REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Query = tuple[str, str]  # (PromQL, legend)


def _target(expr: str, legend: str, ref_id: str, *, instant: bool = False,
            heatmap: bool = False) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(DATASOURCE)
    if instant:
        query = query.instant()
    if heatmap:
        query = query.format(PromQueryFormat.HEATMAP)
    return query


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=v, color=c) for v, c in steps]))


def _last() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def _stat(title: str, description: str, query: Query, unit: str,
          thresholds: dash.ThresholdsConfig, w: int = 6, h: int = 6) -> stat.Panel:
    return (stat.Panel().title(title).description(description).datasource(DATASOURCE)
            .with_target(_target(*query, "A", instant=True)).unit(unit).span(w).height(h)
            .thresholds(thresholds).reduce_options(_last())
            .color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.NONE))


def _ratio_gauge(title: str, description: str, expr: str,
                 thresholds: dash.ThresholdsConfig) -> gauge.Panel:
    return (gauge.Panel().title(title).description(description).datasource(DATASOURCE)
            .with_target(_target(expr, "", "A", instant=True)).unit("percentunit")
            .min(0).max(1).decimals(1).span(6).height(6).thresholds(thresholds)
            .reduce_options(_last()))


def _bars(title: str, description: str, query: Query, unit: str, w: int, h: int = 8,
          *, heatmap: bool = False) -> bargauge.Panel:
    return (bargauge.Panel().title(title).description(description).datasource(DATASOURCE)
            .with_target(_target(*query, "A", instant=True, heatmap=heatmap)).unit(unit).min(0)
            .span(w).height(h).reduce_options(_last())
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .orientation(common.VizOrientation.HORIZONTAL)
            .thresholds(_thresholds((None, "blue"))))


def _series(title: str, description: str, queries: Sequence[Query], unit: str,
            w: int = 12, h: int = 8) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).min(0).span(w).height(h).line_width(1).fill_opacity(10)
             .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING)))
    for ref_id, (expr, legend) in zip(REF_IDS, queries, strict=False):
        panel = panel.with_target(_target(expr, legend, ref_id))
    return panel


def _per_stage(template: str) -> list[Query]:
    """One query per faust stage; `{s}` in the template is the stage name."""
    return [(template.format(s=s), s) for s in STAGES]


def merchant_kpis() -> list[Any]:
    """Row 1: what a merchant looks at first, from the KPI collector's gauges."""
    return [
        _stat("待处理订单数 Pending orders",
              "Orders not shipped or finished yet: awaiting payment, paid, held or allocated.",
              ("sum(orderhub_kpi_pending_orders)", ""), "short",
              _thresholds((None, "green"), (500, "orange"), (2000, "red"))),
        _ratio_gauge("异常订单占比 Anomaly ratio",
                     "(Orders of the window now held + unreplayed dead letters) / "
                     "(orders of the window + those dead letters). Window: ORDERHUB_KPI__WINDOW.",
                     "orderhub_kpi_anomaly_ratio",
                     _thresholds((None, "green"), (0.02, "orange"), (0.06, "red"))),
        _ratio_gauge("当日发货完成率 Same-day ship rate",
                     "Of the orders due today (paid between yesterday's and today's "
                     "cut-off, 16:00 GMT+8 by default), the share already shipped.",
                     "orderhub_kpi_same_day_ship_ratio",
                     _thresholds((None, "red"), (0.9, "orange"), (0.97, "green"))),
        _bars("履约周期 Fulfillment cycle (hours)",
              "Orders picked up today (GMT+8), by hours from payment to carrier pickup.",
              ("sum by (le) (orderhub_kpi_fulfillment_cycle_hours_bucket)", "≤ {{le}} h"),
              "short", 6, 6, heatmap=True),
    ]


def pipeline_health() -> list[Any]:
    """Throughput, lag, dead letters, latency and the notification sender, per stage."""
    return [
        _series("吞吐量 Consumed per second", "Inputs read per stage (ok and dead-lettered).",
                _per_stage(f"sum(rate(orderhub_{{s}}_consumed_total{RATE}))"), "ops"),
        _series("产出 Produced per second", "Messages written to output topics, DLQ included.",
                _per_stage(f"sum(rate(orderhub_{{s}}_produced_total{RATE}))"), "ops"),
        _series("消费积压 Consumer lag", "Messages behind the log end, per stage's group.",
                _per_stage("sum(orderhub_{s}_consumer_lag)"), "short"),
        _series("死信速率 Dead letters per second",
                "Inputs sent to orders.dlq; `orderhub dlq list` shows why.",
                [*_per_stage(f"sum(rate(orderhub_{{s}}_dead_lettered_total{RATE})) or vector(0)"),
                 (f"sum(rate(orderhub_ingest_rejected_total{RATE})) or vector(0)", "ingest")],
                "ops"),
        _bars("未重放死信 Unreplayed dead letters",
              "Dead letters recorded and not replayed yet, by stage.",
              ("sum by (stage) (orderhub_kpi_dead_letters)", "{{stage}}"), "short", 6),
        _stat("KPI 刷新延迟 KPI age",
              "Seconds since the KPI collector last refreshed; above a few minutes it is stuck.",
              ("time() - max(orderhub_kpi_refreshed_timestamp_seconds)", ""), "s",
              _thresholds((None, "green"), (300, "orange"), (900, "red")), w=6, h=8),
        _series("端到端延迟 Latency p50 / p99",
                "From the input message's timestamp to the stage's outputs being acked.",
                [q for s in STAGES for q in (
                    (f"histogram_quantile(0.5, sum by (le) "
                     f"(rate(orderhub_{s}_latency_seconds_bucket{RATE})))", f"{s} p50"),
                    (f"histogram_quantile(0.99, sum by (le) "
                     f"(rate(orderhub_{s}_latency_seconds_bucket{RATE})))", f"{s} p99"))],
                "s"),
        _series("批处理耗时 Batch duration p99",
                "One batch end to end (decode, project, produce) and its Postgres share.",
                [q for s in STAGES for q in (
                    (f"histogram_quantile(0.99, sum by (le) "
                     f"(rate(orderhub_{s}_batch_seconds_bucket{RATE})))", f"{s} batch"),
                    (f"histogram_quantile(0.99, sum by (le) "
                     f"(rate(orderhub_{s}_projection_seconds_bucket{RATE})))", f"{s} projection"))],
                "s"),
        _series("通知 Notifications per second",
                "Buyer messages sent, failed (then retried or dead-lettered), deferred by quiet "
                "hours or rate limits, skipped (no usable address).",
                [(f"sum(rate(orderhub_notify_{k}_total{RATE}))", k)
                 for k in ("sent", "failed", "deferred", "skipped")], "ops"),
        _series("通知服务商耗时 Provider call p99", "SMS, WeChat and webhook calls, by provider.",
                [("histogram_quantile(0.99, sum by (le, provider) "
                  f"(rate(orderhub_notify_provider_seconds_bucket{RATE})))", "{{provider}}")], "s"),
        _series("重试 Retries per second", "Transient failures retried by the stage runner.",
                _per_stage(f"sum(rate(orderhub_{{s}}_retries_total{RATE})) or vector(0)"), "ops"),
    ]


def channels_and_stock() -> list[Any]:
    """Per-channel volume, holds, duplicates and stock."""
    return [
        _bars("今日各渠道订单 Orders today by channel", "Orders created today (GMT+8).",
              ("sum by (channel) (orderhub_kpi_orders_today)", "{{channel}}"), "short", 8),
        _series("各渠道接入量 Orders received per second by channel",
                "Orders ingest wrote to orders.raw (webhooks, polls, files).",
                [(f"sum by (channel) (rate(orderhub_ingest_received_total{RATE}))",
                  "{{channel}}")], "ops", w=16),
        _bars("暂扣原因 Holds by reason", "Orders held now: approval, out of stock, QC, ...",
              ("sum by (reason) (orderhub_kpi_holds)", "{{reason}}"), "short", 8),
        _bars("待处理订单（按状态）Pending orders by status", "The pending count, split.",
              ("sum by (status) (orderhub_kpi_pending_orders)", "{{status}}"), "short", 8),
        _stat("重复订单占比 Duplicate ratio",
              "Duplicates and open suspects over the orders of the window.",
              ("orderhub_kpi_duplicate_ratio", ""), "percentunit",
              _thresholds((None, "green"), (0.01, "orange"), (0.05, "red")), w=4, h=8),
        _stat("低库存 SKU Low-stock SKUs", "SKUs whose available stock is below safety stock.",
              ("orderhub_kpi_low_stock_skus", ""), "short",
              _thresholds((None, "green"), (1, "orange"), (20, "red")), w=4, h=8),
    ]


def _builtin_annotations() -> dash.AnnotationQuery:
    """Grafana's own annotations and alerts, as every dashboard saved from the UI has them."""
    return (dash.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True)
            .hide(True).icon_color("rgba(0, 211, 255, 1)").type("dashboard")
            .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --")))


def build() -> dict[str, Any]:
    """The dashboard as the JSON object Grafana provisions."""
    board = (dash.Dashboard("orderhub — 订单中心 Order hub").uid(UID).tags(["orderhub"])
             .description("Merchant KPIs first, then pipeline health and per-channel volume.")
             .timezone("browser").refresh("30s").time("now-6h", "now").readonly()
             .tooltip(model.DashboardCursorSync.CROSSHAIR).annotation(_builtin_annotations()))
    sections = (("商家指标 Merchant KPIs", merchant_kpis()),
                ("流水线健康 Pipeline health", pipeline_health()),
                ("渠道与库存 Channels and stock", channels_and_stock()))
    for title, panels in sections:
        # An expanded row: its panels follow it at top level (Grafana nests only collapsed ones).
        board = board.with_row(dash.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    data: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    data["templating"] = {"list": []}  # the SDK writes {} without variables; Grafana wants a list
    for number, panel in enumerate(data["panels"], start=1):
        panel["id"] = number
    return data


def render() -> str:
    """The committed file's exact text."""
    return json.dumps(build(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
