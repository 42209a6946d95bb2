from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, text

from runtime.settings import Settings
from schemas.topics import RAW, STATUS
from tests.builders import raw, shopify_fixture
from tests.conftest import REPO, free_port
from tests.stagekit import KafkaIO

T = TypeVar("T")
N = 60


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_for(what: str, probe: Callable[[], T | None], proc: subprocess.Popen[bytes],
             timeout: float = 90) -> T:
    """Poll `probe` until it returns something truthy; fail early if the worker exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the stage worker exited with {proc.returncode}"
        try:
            found = probe()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def stage_process(name: str, metrics_port: int = 0,
                  env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`orderhub stage NAME` as an operator runs it; SIGTERM at the end must exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "stage", name,
                             "--metrics-port", str(metrics_port)], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        print(f"--- stage {name} stderr ---\n{stderr.decode()[-5000:]}")  # shown on failure
    assert proc.returncode == 0, stderr.decode()[-3000:]


def lag_series(body: str) -> dict[tuple[str, str], float]:
    pattern = r'^orderhub_normalize_consumer_lag\{partition="(\d+)",topic="([^"]+)"\} (\S+)$'
    return {(topic, partition): float(value)
            for partition, topic, value in re.findall(pattern, body, re.MULTILINE)}


def sample(body: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_stage_worker_reports_lag_per_partition_latency_and_its_probes(
    settings: Settings, engine: Engine
) -> None:
    port = free_port()
    io = KafkaIO(settings)
    orders = [shopify_fixture(id=6200407290000 + i) for i in range(N)]
    io.produce(RAW, [(f"shopify:s:{o['id']}", raw(o, delivery=f"d{o['id']}")) for o in orders])

    with stage_process("normalize", port) as proc:
        assert wait_for("/healthz", lambda: get(port, "/healthz")[0] == 200, proc)
        wait_for("/readyz", lambda: get(port, "/readyz")[0] == 200, proc)

        def projected() -> bool:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM orders")).scalar() == N

        wait_for(f"{N} orders in the projection", projected, proc)

        def drained() -> dict[tuple[str, str], float] | None:
            series = lag_series(get(port, "/metrics")[1])
            return series if len(series) == 12 and not any(series.values()) else None

        series = wait_for("every partition's lag back at 0", drained, proc)
        body = get(port, "/metrics")[1]

    partitions = {str(p) for p in range(settings.kafka.partitions)}
    assert set(series) == {(t, p) for t in (RAW.name, STATUS.name) for p in partitions}
    assert sample(body, "orderhub_normalize_latency_seconds_count") == N
    assert sample(body, 'orderhub_normalize_consumed_total{outcome="ok"}') == N
