from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from runtime.services import free_port
from tests.conftest import run_cli

DEMO = 60


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """Nothing configured: the hub must start its own broker and Postgres."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERHUB_")}
    env["HOME"] = str(tmp_path / "home")
    return env


def _list(cwd: Path, env: dict[str, str]) -> list[dict[str, object]]:
    result = run_cli("orders", "list", "--json", cwd=cwd, env=env, timeout=60)
    return json.loads(result.stdout) if result.returncode == 0 else []


def test_up_with_nothing_configured_runs_the_demo_end_to_end_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    env = _clean_env(tmp_path)
    port = free_port()
    hub = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "up", "--demo", str(DEMO), "--metrics-port",
         str(port)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        # As when started from a script with `&`: SIGINT arrives ignored, yet Ctrl-C must work.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 120
        orders: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            orders = _list(tmp_path, env)
            if len(orders) == DEMO and {o["status"] for o in orders} == {"allocated"}:
                break
            time.sleep(1)
        assert len(orders) == DEMO and {o["status"] for o in orders} == {"allocated"}
        assert {o["channel"] for o in orders} >= {"taobao", "pdd", "douyin", "shopify"}
        shown = json.loads(run_cli("orders", "show", str(orders[0]["id"]), "--json",
                                   cwd=tmp_path, env=env).stdout)
        assert [n["state"] for n in shown["notifications"]] == ["sent"]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b'orderhub_normalize_consumed_total{outcome="ok"}' in metrics
    finally:
        os.killpg(hub.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            _, err = hub.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGTERM)
            _, err = hub.communicate(timeout=60)
            raise AssertionError(f"the hub ignored Ctrl-C: {err.decode()[-3000:]}") from None
    assert hub.returncode == 0, err.decode()[-3000:]
    assert b"stopped" in err and b"restarting" not in err
    assert not (tmp_path / ".orderhub" / "services.json").exists()
    left = run_cli("orders", "list", cwd=tmp_path, env=env)
    assert left.returncode == 2 and "no running orderhub found" in left.stderr
