"""The ingest commands as an operator runs them: the webhook service, shops, one-shot polls."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from runtime.settings import Settings
from schemas.events import RawOrderReceived
from schemas.topics import RAW
from tests.channel_servers.base import RunningServer, serve
from tests.channel_servers.jd import JdRouter, generated_orders
from tests.conftest import REPO, run_cli
from tests.stagekit import KafkaIO

ORDER = (Path(__file__).parents[1] / "fixtures" / "shopify" / "orders_create.json").read_bytes()
SECRET = "shpss_" + uuid.uuid4().hex
JD_KEY, JD_SECRET, JD_TOKEN = "8D2F0E6B1C4A4F9E", "jd-secret-" + uuid.uuid4().hex, "jd-token-1"


def _request(port: int, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the receiver exited early"
        try:
            if _request(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the receiver never answered /healthz")


def test_the_webhook_service_produces_a_signed_order_and_stops_on_sigterm(
    settings: Settings
) -> None:
    port = settings.webhooks.port
    env = {**os.environ, "ORDERHUB_WEBHOOKS__SHOPIFY_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "stage", "ingest-http",
                             "--metrics-port", "0"], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(port, proc)
        digest = hmac.new(SECRET.encode(), ORDER, hashlib.sha256).digest()
        status, _ = _request(port, "POST", "/webhooks/shopify", ORDER, {
            "Content-Type": "application/json",
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": "acme.myshopify.com",
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat()})
        assert status == 200
        forged, _ = _request(port, "POST", "/webhooks/shopify", ORDER, {
            "Content-Type": "application/json", "X-Shopify-Hmac-Sha256": "Zm9yZ2Vk",
            "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": "acme.myshopify.com",
            "X-Shopify-Webhook-Id": str(uuid.uuid4())})
        assert forged == 401
        [record] = KafkaIO(settings).read(RAW, 1)
        envelope = RawOrderReceived.model_validate_json(record.value or b"")
        assert (envelope.channel, envelope.shop, envelope.transport) == (
            "shopify", "acme.myshopify.com", "webhook")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    assert SECRET not in stderr.decode()


@pytest.fixture
def jd_server() -> Iterator[RunningServer]:
    """JD's contract on loopback, on the real clock: 40 orders modified in the last 40 minutes."""
    start = datetime.now(UTC) - timedelta(minutes=40)
    fake = JdRouter(JD_KEY, JD_SECRET, JD_TOKEN,
                    generated_orders(40, start, timedelta(minutes=1)),
                    now=lambda: datetime.now(UTC))
    with serve(fake.app()) as server:
        yield server


def test_a_shop_added_by_the_operator_is_polled_into_canonical_orders(
    settings: Settings, engine: Engine, jd_server: RunningServer
) -> None:
    added = run_cli("shops", "add", "jd", "shanchuan",
                    "--credential", "app_key=JD_APP_KEY", "--credential", "app_secret=JD_SECRET",
                    "--credential", "access_token=JD_TOKEN",
                    "--option", f"base_url={jd_server.url}/routerjson", "--interval", "30")
    assert added.returncode == 0, added.stderr
    listed = run_cli("shops", "list")
    assert listed.returncode == 0 and "$JD_SECRET" in listed.stdout and "not polled yet" in (
        listed.stdout)

    missing = run_cli("poll", "jd", "--shop", "shanchuan")  # variables not set yet
    assert missing.returncode == 2
    assert "JD_SECRET" in missing.stderr and "Traceback" not in missing.stderr

    env = {**os.environ, "JD_APP_KEY": JD_KEY, "JD_SECRET": JD_SECRET, "JD_TOKEN": JD_TOKEN}
    polled = run_cli("poll", "jd", "--shop", "shanchuan", env=env)
    assert polled.returncode == 0, polled.stderr
    assert "40 order(s) written to orders.raw" in polled.stderr
    drained = run_cli("drain", "--timeout", "240", timeout=300)
    assert drained.returncode == 0, drained.stderr
    with engine.connect() as conn:
        orders = conn.execute(text("SELECT count(*) FROM orders WHERE channel = 'jd'")).scalar()
        position = conn.execute(text("SELECT position FROM poll_cursors")).scalar()
    assert orders == 40 and position is not None

    listed = run_cli("shops", "list")
    assert "orders 40" in listed.stdout
    for secret in (JD_SECRET, JD_TOKEN):
        assert secret not in listed.stdout + listed.stderr + polled.stderr + drained.stderr
    removed = run_cli("shops", "remove", "jd", "shanchuan")
    assert removed.returncode == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM poll_cursors")).scalar() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["shops", "add", "csv", "acme"], "channel 'csv' cannot be polled"),
        (["shops", "add", "jd", "s1", "--credential", "app_secret=hunter2!"],
         "must name an environment variable"),
        (["shops", "add", "jd", "s1", "--credential", "app_secret"], "expects NAME=VALUE"),
        (["shops", "remove", "jd", "nope"], "no shop jd/nope"),
        (["poll", "jd", "--shop", "nope"], "no shop jd/nope"),
        (["poll", "csv", "--shop", "nope"], "no shop csv/nope"),
    ],
)
def test_shop_misuse_gets_a_plain_message(settings: Settings, args: list[str], message: str
                                          ) -> None:
    result = run_cli(*args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
