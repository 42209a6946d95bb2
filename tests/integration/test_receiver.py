"""The push receiver over real HTTP, producing to the test broker and recording in Postgres."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from ingest import metrics
from ingest.publish import Publisher
from ingest.push import PushSecrets
from ingest.receiver import build_app
from runtime.kafka import make_producer
from runtime.settings import Settings
from schemas.events import DeadLetter, OrderStatusChanged, RawOrderReceived
from schemas.topics import DLQ, RAW, STATUS
from tests.channel_servers.base import serve
from tests.stagekit import KafkaIO

FIXTURES = Path(__file__).parents[1] / "fixtures"
SHOPIFY_SECRET = "shpss_test_" + "s" * 24
DOUYIN_KEY, DOUYIN_SECRET = "7001234567890", "douyin-secret-for-tests"
ORDER = (FIXTURES / "shopify" / "orders_create.json").read_bytes()


@pytest.fixture
def receiver(settings: Settings, engine: Engine) -> Iterator[str]:
    assert settings.kafka.bootstrap
    publisher = Publisher(settings, make_producer(settings.kafka.bootstrap, "tests-receiver"),
                          engine, metrics.build(CollectorRegistry()), ack_timeout_s=3.5)
    secrets = {"shopify": PushSecrets(secret=SHOPIFY_SECRET),
               "douyin": PushSecrets(secret=DOUYIN_SECRET, app_key=DOUYIN_KEY)}
    limited = settings.webhooks.model_copy(update={"max_body_bytes": 256 * 1024})
    with serve(build_app(publisher, limited, secrets=secrets)) as server:
        yield server.url


def post(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def shopify_headers(body: bytes, *, secret: str = SHOPIFY_SECRET, webhook_id: str | None = None,
                    content_type: str = "application/json") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "Content-Type": content_type,
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": "acme-cn.myshopify.com",
        "X-Shopify-API-Version": "2025-01",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }


def raw_envelopes(io: KafkaIO, expect: int) -> list[RawOrderReceived]:
    records = io.read(RAW, expect, timeout=5 if expect == 0 else 15)
    return [RawOrderReceived.model_validate_json(r.value or b"") for r in records]


def test_a_signed_shopify_order_is_produced_once_however_often_it_is_delivered(
    settings: Settings, engine: Engine, receiver: str
) -> None:
    headers = shopify_headers(ORDER, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    first = post(receiver, "/webhooks/shopify", ORDER, headers)
    again = post(receiver, "/webhooks/shopify", ORDER, headers)  # Shopify retries: same id
    assert first[0] == 200 and again[0] == 200
    io = KafkaIO(settings)
    envelopes = raw_envelopes(io, 1)
    assert len(envelopes) == 1
    envelope = envelopes[0]
    assert envelope.transport == "webhook" and envelope.channel == "shopify"
    assert envelope.shop == "acme-cn.myshopify.com"
    assert envelope.delivery_id == "shopify:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert envelope.payload == json.loads(ORDER)  # untouched
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT count(*) FROM push_deliveries")).scalar()
    assert recorded == 1


@pytest.mark.parametrize(
    "tamper",
    ["forged", "tampered", "missing"],
)
def test_a_bad_signature_is_401_and_nothing_is_produced(
    settings: Settings, receiver: str, tamper: str
) -> None:
    body, headers = ORDER, shopify_headers(ORDER)
    if tamper == "forged":
        headers = shopify_headers(ORDER, secret="not-the-app-secret")
    elif tamper == "tampered":
        body = ORDER.replace(b'"total_price"', b'"total_price" ', 1)  # one byte more
        assert body != ORDER
    else:
        del headers["X-Shopify-Hmac-Sha256"]
    status, answer = post(receiver, "/webhooks/shopify", body, headers)
    assert status == 401, answer
    assert raw_envelopes(KafkaIO(settings), 0) == []


def test_a_stale_delivery_is_refused(settings: Settings, receiver: str) -> None:
    headers = shopify_headers(ORDER)
    headers["X-Shopify-Triggered-At"] = "2020-01-01T00:00:00Z"  # years ago: a replay
    status, _ = post(receiver, "/webhooks/shopify", ORDER, headers)
    assert status == 401
    assert raw_envelopes(KafkaIO(settings), 0) == []


def test_an_oversized_body_is_413_before_anything_else(settings: Settings, receiver: str
                                                         ) -> None:
    big = b'{"pad": "' + b"x" * (300 * 1024) + b'"}'
    status, answer = post(receiver, "/webhooks/shopify", big, shopify_headers(big))
    assert status == 413, answer
    assert raw_envelopes(KafkaIO(settings), 0) == []


def test_the_wrong_content_type_is_415(receiver: str) -> None:
    status, answer = post(receiver, "/webhooks/shopify", ORDER,
                          shopify_headers(ORDER, content_type="text/plain"))
    assert status == 415
    assert b"application/json" in answer


def test_unknown_and_unconfigured_channels_are_told_apart(receiver: str) -> None:
    status, answer = post(receiver, "/webhooks/ebay", ORDER, {"Content-Type": "application/json"})
    assert status == 404 and b"shopify" in answer
    status, answer = post(receiver, "/webhooks/wechat", b"{}",
                          {"Content-Type": "application/json"})
    assert status == 503 and b"not configured" in answer


def test_a_signed_but_unreadable_body_is_dead_lettered_and_acknowledged(
    settings: Settings, engine: Engine, receiver: str
) -> None:
    body = b'{"id": 1, "line_items": [' + b"not json"
    status, _ = post(receiver, "/webhooks/shopify", body, shopify_headers(body))
    assert status == 200  # retrying cannot make it better
    letters = [DeadLetter.model_validate_json(r.value or b"")
               for r in KafkaIO(settings).read(DLQ, 1)]
    assert len(letters) == 1 and letters[0].stage == "ingest"
    assert base64.b64decode(letters[0].original) == body
    with engine.connect() as conn:
        reason = conn.execute(text("SELECT message FROM dead_letters")).scalar()
    assert reason


def douyin_post(receiver: str, messages: list[dict[str, Any]]) -> tuple[int, bytes]:
    body = json.dumps(messages, separators=(",", ":")).encode()
    sign = hashlib.md5(DOUYIN_KEY.encode() + body + DOUYIN_SECRET.encode()).hexdigest()  # noqa: S324
    return post(receiver, "/webhooks/douyin", body,
                {"Content-Type": "application/json", "event-sign": sign, "app-id": DOUYIN_KEY})


def test_a_douyin_paid_message_becomes_a_status_change_and_a_fetch(
    settings: Settings, engine: Engine, receiver: str
) -> None:
    now = int(datetime.now(UTC).timestamp())
    data = {"p_id": 6930123456789012345, "s_ids": [6930123456789012346], "shop_id": 4463798,
            "order_status": 105, "order_type": 0, "pay_time": now, "pay_type": 1,
            "biz": 2, "update_time": now}
    status, answer = douyin_post(receiver, [{"tag": "101", "msg_id": "7123000000000000001",
                                             "data": json.dumps(data)}])
    assert status == 200, answer
    assert json.loads(answer) == {"code": 0, "msg": "success"}
    changes = [OrderStatusChanged.model_validate_json(r.value or b"")
               for r in KafkaIO(settings).read(STATUS, 1)]
    assert [(c.order_id, c.status.value, c.source) for c in changes] == [
        ("DY6930123456789012345", "paid", "douyin")]
    with engine.connect() as conn:
        fetches = conn.execute(text("SELECT channel, shop, native_id FROM fetch_requests")).all()
    assert [tuple(f) for f in fetches] == [("douyin", "4463798", "6930123456789012345")]
