"""`orderhub status`: the business KPIs and the pipeline's health in a terminal, live.

For merchants without Grafana. It reads what the KPI collector serves (runtime/kpi.py, the same
queries, straight from Postgres) and each stage's consumer lag from Kafka, every --interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from sqlalchemy import Engine

from runtime.services import Endpoints
from runtime.settings import Settings
from schemas.errors import ConfigurationError, TransientError

TITLES = {
    "pending": ("待处理订单数", "pending orders"),
    "anomaly": ("异常订单占比", "anomaly ratio"),
    "same_day": ("当日发货完成率", "same-day ship rate"),
    "cycle": ("履约周期", "fulfillment cycle"),
    "duplicate": ("重复订单占比", "duplicate ratio"),
    "holds": ("挂起订单", "orders on hold"),
    "low_stock": ("低库存SKU", "low-stock SKUs"),
    "today": ("今日订单", "orders today"),
}


@dataclass
class _Cli:
    """The CLI's helpers, handed over by runtime/cli.py (see cli_ops.register for why)."""

    settings: Callable[[], Settings]
    print_json: Callable[[Any], None]


_cli: list[_Cli] = []


def register(app: typer.Typer, settings: Callable[[], Settings],
             print_json: Callable[[Any], None]) -> None:
    """Attach `status` to the CLI."""
    _cli[:] = [_Cli(settings, print_json)]
    app.command("status")(status)


def status(
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the data as JSON and exit.")
                       ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.5)] = 5.0,
) -> None:
    """The KPIs (pending, anomalies, same-day shipping, fulfillment cycle) and each stage's
    lag and dead letters, refreshed live until Ctrl-C."""
    from runtime.db import make_engine
    from runtime.services import discover

    settings = _cli[0].settings()
    endpoints = discover(settings)  # no hub: a one-line error that says how to start one
    engine = make_engine(endpoints.database_url, pool_size=1)
    try:
        if as_json:
            _cli[0].print_json(snapshot(settings, endpoints, engine))
        elif once:
            Console().print(render(snapshot(settings, endpoints, engine)))
        else:
            _live(settings, endpoints, engine, interval)
    finally:
        engine.dispose()


def snapshot(settings: Settings, endpoints: Endpoints, engine: Engine) -> dict[str, Any]:
    """The KPIs (one read-only snapshot) and, per stage, consumer lag and dead letters."""
    from runtime.kpi import read_kpis
    from schemas.base import SHANGHAI

    data = read_kpis(engine, datetime.now(SHANGHAI), settings.kpi).as_dict()
    data["pipeline"] = pipeline_health(settings, endpoints, data["dead_letters"])
    return data


def pipeline_health(settings: Settings, endpoints: Endpoints, dead: dict[str, int]
                    ) -> list[dict[str, Any]]:
    """Per stage in pipeline order: messages not yet processed (None if Kafka did not answer)
    and dead letters not replayed; ingest first (it has dead letters, no consumer group)."""
    from runtime.stages import STAGES

    lag: dict[str, int | None] = dict.fromkeys(STAGES)
    error = None
    with ThreadPoolExecutor(max_workers=len(STAGES)) as pool:  # one round trip per stage
        futures = {name: pool.submit(_stage_lag, settings, endpoints, name) for name in STAGES}
        for name, future in futures.items():
            try:
                lag[name] = future.result()
            except TransientError as e:
                error = str(e)
    rows: list[dict[str, Any]] = [
        {"stage": "ingest", "lag": None, "dead_letters": dead.get("ingest", 0)}]
    for name in STAGES:
        row = {"stage": name, "dead_letters": dead.get(name, 0), "lag": lag[name]}
        rows.append(row if lag[name] is not None else {**row, "error": error})
    return rows


def _stage_lag(settings: Settings, endpoints: Endpoints, name: str) -> int:
    """Messages on the stage's inputs its consumer group has not committed yet (the same
    reading as runtime.supervisor.pipeline_lag, for one stage)."""
    from runtime.kafka import group_lag
    from runtime.stages import STAGES, group_id

    topics = [s.full_name(settings.kafka.topic_prefix) for s in STAGES[name].sources]
    parts = group_lag(endpoints.bootstrap, {group_id(settings, name): topics},
                      settings.kafka.partitions)
    return sum(p.lag for p in parts)


def _live(settings: Settings, endpoints: Endpoints, engine: Engine, interval: float) -> None:
    import signal

    from rich.live import Live

    # Explicitly, as the hub does: started from a script with `&`, the process inherits SIGINT
    # ignored and Python then installs no KeyboardInterrupt handler, so Ctrl-C would do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with Live(_frame(settings, endpoints, engine, interval), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_frame(settings, endpoints, engine, interval), refresh=True)
        except KeyboardInterrupt:
            return


def _frame(settings: Settings, endpoints: Endpoints, engine: Engine, interval: float) -> Any:
    """One frame; a hub that stopped or a database that went away shows, and is retried."""
    try:
        return render(snapshot(settings, endpoints, engine), interval)
    except (TransientError, ConfigurationError) as e:
        return Panel(f"[red]hub not reachable:[/red] {e}\nretrying every {interval:g} s "
                     "(Ctrl-C to stop; `orderhub up` starts the hub)", title="orderhub status")


def render(data: dict[str, Any], interval: float | None = None) -> Group:
    """The frame: the KPI table (the four merchant KPIs first), then the pipeline table."""
    at = datetime.fromisoformat(data["at"]).strftime("%Y-%m-%d %H:%M:%S")
    every = f" · every {interval:g} s" if interval else ""
    return Group(f"[bold]orderhub status[/bold] · {at} GMT+8{every}",
                 _kpi_table(data), _pipeline_table(data["pipeline"]))


def _kpi_table(d: dict[str, Any]) -> Table:
    table = Table(title="KPIs", title_justify="left", show_header=False)
    table.add_column("KPI", style="bold")
    table.add_column("value", justify="right")
    table.add_column("how")
    a, sd, cycle = d["anomalies"], d["same_day"], d["fulfillment_cycle_hours"]
    held = sum(d["holds"].values())
    due = (f"{_hm(sd['due_from'])} → {_hm(sd['due_until'])}")
    rows = [
        ("pending", str(d["pending_total"]), _parts(d["pending_orders"])),
        ("anomaly", _pct(d["anomaly_ratio"]),
         f"{a['held']} held + {a['dead_letters']} dead letters of "
         f"{a['orders'] + a['dead_letters']} in the window"),
        ("same_day", _pct(d["same_day_ship_ratio"]),
         f"{sd['shipped']} of {sd['due']} due shipped (paid {due})"),
        ("cycle", _hours(cycle), f"{cycle['count']} picked up today"
         + (f" · p90 {cycle['p90']:.1f} h" if cycle["p90"] is not None else "")),
        ("duplicate", _pct(d["duplicate_ratio"]), f"{d['duplicates']} in the window"),
        ("holds", str(held), _parts(d["holds"])),
        ("low_stock", str(d["low_stock_skus"]), "available below safety stock"),
        ("today", str(sum(d["orders_today"].values())), _parts(d["orders_today"])),
    ]
    for key, value, how in rows:
        zh, en = TITLES[key]
        table.add_row(f"{zh} {en}", value, how)
    return table


def _pipeline_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="pipeline", title_justify="left")
    table.add_column("stage")
    table.add_column("lag (messages waiting)", justify="right")
    table.add_column("dead letters (not replayed)", justify="right")
    for r in rows:
        lag = "-" if r["stage"] == "ingest" else (
            "[red]unknown[/red]" if r["lag"] is None else str(r["lag"]))
        dead = f"[red]{r['dead_letters']}[/red]" if r["dead_letters"] else "0"
        table.add_row(r["stage"], lag, dead)
    return table


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def _hours(cycle: dict[str, Any]) -> str:
    return "-" if cycle["p50"] is None else f"median {cycle['p50']:.1f} h"


def _hm(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%m-%d %H:%M")


def _parts(counts: dict[str, int]) -> str:
    return " · ".join(f"{k} {n}" for k, n in counts.items() if n) or "none"
