"""Every process `orderhub stage NAME` can run that is not a faust stage, declared once.

The faust stages are in runtime/stages.py. These are the other long-running processes: the
webhook receiver, the pollers, the notification sender and the KPI collector. Each entry runs
until SIGTERM/SIGINT; `up` starts the ones in `UP` next to the stages (runtime/hub.py), and the
deployment manifests in deploy/ name exactly these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runtime.services import Endpoints
from runtime.settings import Settings

Run = Callable[[Settings, Endpoints, int], None]


def _ingest(name: str) -> Run:
    def run(settings: Settings, endpoints: Endpoints, metrics_port: int) -> None:
        from runtime.ingest_services import run_service

        run_service(name, settings, endpoints, metrics_port)

    return run


def _kpi(settings: Settings, endpoints: Endpoints, metrics_port: int) -> None:
    from runtime.kpi import run_kpi

    run_kpi(settings, endpoints, metrics_port)


@dataclass(frozen=True)
class Process:
    run: Run
    help: str
    in_up: Callable[[Settings], bool] = lambda _settings: True


PROCESSES: dict[str, Process] = {
    "ingest-http": Process(_ingest("ingest-http"), "the webhook receiver",
                           in_up=lambda s: bool(s.webhooks.port)),
    "ingest-poll": Process(_ingest("ingest-poll"), "one poll loop per configured shop"),
    "kpi": Process(_kpi, "the business KPI collector, docs/kpis.md"),
}


def up_processes(settings: Settings) -> tuple[str, ...]:
    """The non-stage processes `orderhub up` starts, in a stable order."""
    return tuple(name for name, p in PROCESSES.items() if p.in_up(settings))
