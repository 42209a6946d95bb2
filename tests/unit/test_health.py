from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from runtime.health import Heartbeat, MetricsServer, serve_metrics
from runtime.metrics import build_stage_metrics, publish_lag
from schemas.errors import ConfigurationError


class Switch:
    def __init__(self) -> None:
        self.ok = False
        self.reason = "no partitions assigned"

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.reason


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("orderhub_test_consumed", "Messages consumed", ["outcome"],
            registry=registry).labels(outcome="ok").inc(3)
    return registry


@pytest.fixture
def ready() -> Switch:
    return Switch()


@pytest.fixture
def server(registry: CollectorRegistry, ready: Switch) -> Iterator[MetricsServer]:
    running = serve_metrics("127.0.0.1", 0, registry, ready)
    yield running
    running.close()


def test_metrics_are_served_in_the_prometheus_text_format(server: MetricsServer) -> None:
    status, body = _get(server.port, "/metrics")
    assert status == 200
    assert 'orderhub_test_consumed_total{outcome="ok"} 3.0' in body.decode()


def test_only_the_injected_registry_is_exposed(server: MetricsServer) -> None:
    _, body = _get(server.port, "/metrics")
    assert "python_gc" not in body.decode() and "process_cpu" not in body.decode()


def test_readiness_flips_from_503_to_200_when_the_check_says_so(
    server: MetricsServer, ready: Switch
) -> None:
    status, body = _get(server.port, "/readyz")
    assert status == 503
    assert json.loads(body) == {"status": "not ready", "reason": "no partitions assigned"}

    ready.ok, ready.reason = True, "6 partition(s) assigned"
    status, body = _get(server.port, "/readyz")
    assert status == 200
    assert json.loads(body) == {"status": "ready", "reason": "6 partition(s) assigned"}


def test_a_live_process_answers_healthz_with_200(server: MetricsServer) -> None:
    status, body = _get(server.port, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_a_check_that_raises_answers_503_and_the_server_keeps_serving(
    registry: CollectorRegistry
) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    running = serve_metrics("127.0.0.1", 0, registry, broken)
    try:
        status, body = _get(running.port, "/readyz")
        assert status == 503 and "RuntimeError: boom" in json.loads(body)["reason"]
        assert _get(running.port, "/metrics")[0] == 200
    finally:
        running.close()


def test_an_unknown_path_is_404(server: MetricsServer) -> None:
    assert _get(server.port, "/nope")[0] == 404


def test_a_stuck_loop_makes_healthz_answer_503(registry: CollectorRegistry) -> None:
    now = [100.0]
    heartbeat = Heartbeat(max_age_s=30, clock=lambda: now[0])
    running = serve_metrics("127.0.0.1", 0, registry, ready=lambda: (True, "ok"),
                            live=heartbeat.check)
    try:
        now[0] += 10
        assert _get(running.port, "/healthz")[0] == 200
        now[0] += 25
        status, body = _get(running.port, "/healthz")
        assert status == 503 and "has not run for 35 s" in json.loads(body)["reason"]
        heartbeat.beat()
        assert _get(running.port, "/healthz")[0] == 200
    finally:
        running.close()


def test_a_port_in_use_is_a_configuration_error_that_names_it(
    server: MetricsServer, registry: CollectorRegistry
) -> None:
    with pytest.raises(ConfigurationError, match=f"127.0.0.1:{server.port}"):
        serve_metrics("127.0.0.1", server.port, registry, ready=lambda: (True, "ok"))


def test_a_closed_server_releases_its_port(registry: CollectorRegistry) -> None:
    first = serve_metrics("127.0.0.1", 0, registry, ready=lambda: (True, "ok"))
    port = first.port
    first.close()
    again = serve_metrics("127.0.0.1", port, registry, ready=lambda: (True, "ok"))
    again.close()
    with pytest.raises(OSError):
        _get(port, "/metrics")


def test_consumer_lag_shows_one_series_per_assigned_partition_and_drops_revoked_ones() -> None:
    registry = CollectorRegistry()
    lag = build_stage_metrics("dedup", registry).consumer_lag
    shown = publish_lag(lag, {("orders.normalized", 0): 5, ("orders.normalized", 1): 0}, set())
    shown = publish_lag(lag, {("orders.normalized", 1): 2}, shown)

    def value(partition: str) -> float | None:
        return registry.get_sample_value(
            "orderhub_dedup_consumer_lag", {"topic": "orders.normalized", "partition": partition})

    assert (value("0"), value("1")) == (None, 2.0)
    assert shown == {("orders.normalized", 1)}
