from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from ingest import metrics
from ingest.publish import Publisher
from ingest.push import PushSecrets
from ingest.receiver import build_app, serve
from ingest.wechat import signature as wechat_signature
from runtime.kafka import make_producer
from runtime.settings import Settings
from schemas.topics import RAW, STATUS
from tests.conftest import free_port
from tests.integration.test_receiver import (
    DOUYIN_KEY,
    DOUYIN_SECRET,
    ORDER,
    SHOPIFY_SECRET,
    douyin_post,
    post,
    shopify_headers,
)
from tests.stagekit import KafkaIO

WECHAT_TOKEN = "wechat-token-for-tests"
SLOW_S = 2.0  # the receiver's body and idle limits in these tests


@pytest.fixture
def receiver(settings: Settings, engine: Engine) -> Iterator[str]:
    """The real receiver app served by the real `serve`, as `orderhub stage ingest-http` does."""
    assert settings.kafka.bootstrap
    publisher = Publisher(settings, make_producer(settings.kafka.bootstrap, "tests-abuse"),
                          engine, metrics.build(CollectorRegistry()), ack_timeout_s=3.5)
    secrets = {"shopify": PushSecrets(secret=SHOPIFY_SECRET),
               "douyin": PushSecrets(secret=DOUYIN_SECRET, app_key=DOUYIN_KEY),
               "wechat": PushSecrets(secret=WECHAT_TOKEN)}
    limited = settings.webhooks.model_copy(update={"max_body_bytes": 256 * 1024})
    app = build_app(publisher, limited, secrets=secrets, body_s=SLOW_S)
    port = free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete,
                              args=(serve(app, "127.0.0.1", port, stop, idle_s=SLOW_S),),
                              daemon=True)
    thread.start()
    _wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(stop.set)
    thread.join(15)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("receiver did not start")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _order(order_id: int) -> bytes:
    return ORDER.replace(b"820982911946154508", str(order_id).encode())


def _produced(settings: Settings) -> tuple[int, int]:
    io = KafkaIO(settings)
    return len(io.read(RAW, 0, timeout=3)), len(io.read(STATUS, 0, timeout=3))


def _a_valid_push_is_answered_quickly(receiver: str, within_s: float = 2.0) -> None:
    started = time.monotonic()
    status, answer = post(receiver, "/webhooks/shopify", ORDER, shopify_headers(ORDER))
    assert status == 200, answer
    assert time.monotonic() - started < within_s


def _forged(receiver: str, i: int) -> int:
    body = _order(900_000_000_000_000 + i)
    return post(receiver, "/webhooks/shopify", body,
                shopify_headers(body, secret=f"guess-{i}"))[0]


def test_hundreds_of_concurrent_forged_pushes_are_refused_and_a_genuine_one_gets_through(
    settings: Settings, receiver: str
) -> None:
    with ThreadPoolExecutor(max_workers=32) as pool:
        storm = [pool.submit(_forged, receiver, i) for i in range(400)]
        time.sleep(0.2)  # in the middle of the storm
        _a_valid_push_is_answered_quickly(receiver, within_s=3.0)
        answers = [f.result() for f in storm]
    assert answers == [401] * 400
    assert _produced(settings) == (1, 0)


def _tampered_shopify(body: bytes, how: str) -> bytes:
    if how == "price":
        return body.replace(b'"total_price": "', b'"total_price": "9', 1)
    if how == "truncated":
        return body[:-1]
    if how == "appended":
        return body + b" "
    return body.replace(b"820982911946154508", b"820982911946154509", 1)


@pytest.mark.parametrize("how", ["price", "truncated", "appended", "order_id"])
def test_a_shopify_body_changed_after_signing_is_refused(
    settings: Settings, receiver: str, how: str
) -> None:
    headers = shopify_headers(ORDER)
    tampered = _tampered_shopify(ORDER, how)
    assert tampered != ORDER
    status, _ = post(receiver, "/webhooks/shopify", tampered, headers)
    assert status == 401
    assert _produced(settings) == (0, 0)
    _a_valid_push_is_answered_quickly(receiver)


def _douyin_message(msg_id: str, at: int) -> list[dict[str, Any]]:
    data = {"p_id": 6930123456789012345, "s_ids": [6930123456789012346], "shop_id": 4463798,
            "order_status": 105, "order_type": 0, "pay_time": at, "pay_type": 1, "biz": 2,
            "update_time": at}
    return [{"tag": "101", "msg_id": msg_id, "data": json.dumps(data)}]


def test_a_douyin_body_changed_after_signing_is_refused(
    settings: Settings, receiver: str
) -> None:
    now = int(time.time())
    body = json.dumps(_douyin_message("7123000000000000009", now), separators=(",", ":"))
    signed = post(receiver, "/webhooks/douyin", body.replace("105", "106").encode(),
                  {"Content-Type": "application/json", "app-id": DOUYIN_KEY,
                   "event-sign": _douyin_sign(body.encode())})
    assert signed[0] == 401
    assert _produced(settings) == (0, 0)


def _douyin_sign(body: bytes) -> str:
    return hashlib.md5(DOUYIN_KEY.encode() + body + DOUYIN_SECRET.encode()).hexdigest()  # noqa: S324


def _wechat_post(receiver: str, at: int) -> int:
    nonce = uuid.uuid4().hex[:10]
    sign = wechat_signature(WECHAT_TOKEN, str(at), nonce)
    query = f"timestamp={at}&nonce={nonce}&signature={sign}"
    body = json.dumps({"ToUserName": "gh_97417a04a28d", "FromUserName": "o9AgO5Kd5ggOC",
                       "CreateTime": at, "MsgType": "event", "Event": "channels_ec_order_pay",
                       "order_info": {"order_id": 3705115058471208928}}).encode()
    return post(receiver, f"/webhooks/wechat?{query}", body,
                {"Content-Type": "application/json"})[0]


def _shopify_at(receiver: str, at: datetime) -> int:
    headers = shopify_headers(ORDER)
    headers["X-Shopify-Triggered-At"] = at.isoformat()
    return post(receiver, "/webhooks/shopify", ORDER, headers)[0]


def test_stale_and_future_timestamps_are_refused_on_every_channel(
    settings: Settings, receiver: str
) -> None:
    now = datetime.now(UTC)
    unix = int(now.timestamp())
    answers = {
        "shopify 49 h old": _shopify_at(receiver, now - timedelta(hours=49)),
        "shopify 10 min ahead": _shopify_at(receiver, now + timedelta(minutes=10)),
        "wechat 6 min old": _wechat_post(receiver, unix - 360),
        "wechat 6 min ahead": _wechat_post(receiver, unix + 360),
        "douyin 8 days old": douyin_post(receiver, _douyin_message("7123000000000000010",
                                                                   unix - 8 * 86400))[0],
    }
    assert answers == dict.fromkeys(answers, 401)
    assert _produced(settings) == (0, 0)
    assert _wechat_post(receiver, unix) == 200  # the same push, on time, is taken
    assert _produced(settings) == (0, 1)


def _replay(receiver: str, n: int) -> int:
    body = _order(700_000_000_000_000 + n % 20)
    headers = shopify_headers(body, webhook_id=f"replayed-{n % 20}")
    return post(receiver, "/webhooks/shopify", body, headers)[0]


def test_twenty_deliveries_replayed_ten_times_each_concurrently_are_produced_once_each(
    settings: Settings, engine: Engine, receiver: str
) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda n: _replay(receiver, n), range(200)))
    now = int(time.time())
    douyin = [douyin_post(receiver, _douyin_message("7123000000000000011", now))[0]
              for _ in range(20)]
    assert set(answers) == {200} and set(douyin) == {200}
    assert _produced(settings) == (20, 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM push_deliveries")).scalar() == 21


def _slow_headers(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\n")
    return sock


def _slow_body(port: int) -> socket.socket:
    headers = shopify_headers(ORDER)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\n{head}"
                 f"Content-Length: {len(ORDER)}\r\n\r\n".encode() + ORDER[:10])
    return sock


def _trickle(socks: list[socket.socket], data: bytes, until: float) -> dict[int, bytes]:
    """Send a byte on each socket every 0.1 s; what each got back when the server hung up."""
    for sock in socks:
        sock.setblocking(False)
    answers: dict[int, bytes] = {}
    while time.monotonic() < until and len(answers) < len(socks):
        for i, sock in enumerate(socks):
            if i in answers:
                continue
            try:
                got = sock.recv(4096)
                answers[i] = got
                continue
            except BlockingIOError:
                pass
            except OSError:
                answers[i] = b""
                continue
            try:
                sock.send(data)
            except OSError:
                answers[i] = b""
        time.sleep(0.1)
    return answers


def test_slow_clients_are_cut_off_and_never_stop_a_genuine_push(
    settings: Settings, receiver: str
) -> None:
    port = _port(receiver)
    headers = [_slow_headers(port) for _ in range(50)]
    bodies = [_slow_body(port) for _ in range(20)]
    try:
        _a_valid_push_is_answered_quickly(receiver)
        until = time.monotonic() + SLOW_S * 4
        cut_headers = _trickle(headers, b"X", until)
        cut_bodies = _trickle(bodies, b" ", until)
    finally:
        for sock in headers + bodies:
            sock.close()
    assert len(cut_headers) == 50 and set(cut_headers.values()) <= {b""}
    assert len(cut_bodies) == 20
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in cut_bodies.values())
    assert _produced(settings) == (1, 0)
    _a_valid_push_is_answered_quickly(receiver)


def test_an_oversized_chunked_body_without_a_length_is_413(
    settings: Settings, receiver: str
) -> None:
    headers = shopify_headers(ORDER)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", _port(receiver)), timeout=10) as sock:
        sock.sendall(f"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\n{head}"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            for _ in range(8):  # 512 KiB, twice the limit
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the receiver may hang up as soon as it answered
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    assert _produced(settings) == (0, 0)
    _a_valid_push_is_answered_quickly(receiver)
