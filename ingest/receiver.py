"""The push receiver: one aiohttp service for every channel that pushes over HTTP.

`POST /webhooks/{shopify,douyin,wechat}` (and `GET /webhooks/wechat`, WeChat's URL check). Per
request: refuse a body over the limit (413) or of the wrong type (415) before reading it; verify
the channel's signature on the raw bytes in constant time (401, nothing produced); then produce
once per delivery id and answer what the channel expects — within its deadline (Shopify 5 s), or
503 so that the channel delivers again. A signed body that cannot be understood is dead-lettered
and acknowledged, since sending it again cannot make it better.

Slow clients are cut off so that they cannot hold connections open (slowloris): a body not
received within BODY_S is 408, and a connection that has not sent a whole request line and
headers within IDLE_S of opening (or of its last response) is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from ingest.publish import Outcome, Publisher
from ingest.push import Delivery, PushRequest, PushSecrets, Unauthorized
from runtime.settings import WebhookSettings
from schemas.errors import InvalidInput, TransientError

log = logging.getLogger(__name__)

# Answer in time for the strictest channel (Shopify: 5 s), leaving room for the network.
DEADLINE_S = 4.0
BODY_S = 10.0
IDLE_S = 15.0
JSON = ("application/json",)
# WeChat pushes JSON or XML depending on how the shop configured its message format.
CONTENT_TYPES: Mapping[str, tuple[str, ...]] = {
    "shopify": JSON, "douyin": JSON, "wechat": (*JSON, "text/xml", "application/xml"),
}


class Verify(Protocol):
    def __call__(self, request: PushRequest, secrets: PushSecrets, now: datetime) -> Delivery: ...


def push_handlers() -> dict[str, Verify]:
    """The channels that push over HTTP and their verifiers."""
    from ingest import douyin, shopify, wechat

    return {"shopify": shopify.verify_push, "douyin": douyin.verify_push,
            "wechat": wechat.verify_push}


def secrets_from(settings: WebhookSettings) -> dict[str, PushSecrets]:
    """Each channel's secrets; a channel whose secret is not configured is left out (503)."""
    found: dict[str, PushSecrets] = {}
    if settings.shopify_secret is not None:
        found["shopify"] = PushSecrets(secret=settings.shopify_secret.get_secret_value())
    if settings.douyin_app_secret is not None and settings.douyin_app_key:
        found["douyin"] = PushSecrets(secret=settings.douyin_app_secret.get_secret_value(),
                                      app_key=settings.douyin_app_key)
    if settings.wechat_token is not None:
        found["wechat"] = PushSecrets(secret=settings.wechat_token.get_secret_value())
    return found


def build_app(
    publisher: Publisher, settings: WebhookSettings, *,
    secrets: Mapping[str, PushSecrets] | None = None,
    handlers: Mapping[str, Verify] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC), body_s: float = BODY_S,
) -> web.Application:
    """The receiver's application; `secrets` default to the settings' (tests pass their own);
    `body_s`: how long a client may take to send its body before it gets 408."""
    verifiers = dict(handlers or push_handlers())
    configured = dict(secrets_from(settings) if secrets is None else secrets)
    limit = settings.max_body_bytes

    async def webhook(request: web.Request) -> web.StreamResponse:
        channel = request.match_info["channel"]
        if channel not in verifiers:
            return _text(404, f"no webhook for channel {channel!r}; "
                              f"channels that push here: {', '.join(sorted(verifiers))}")
        if channel not in configured:
            log.error("webhook %s refused: its secret is not configured", channel)
            return _text(503, f"{channel} webhooks are not configured on this hub")
        if request.content_length is not None and request.content_length > limit:
            _count(publisher, channel, "too_large")
            return _text(413, f"body over {limit} bytes")
        if request.method == "POST" and request.content_type not in CONTENT_TYPES[channel]:
            _count(publisher, channel, "wrong_content_type")
            return _text(415, f"expected {' or '.join(CONTENT_TYPES[channel])}, "
                              f"got {request.content_type or 'none'}")
        try:
            body = await asyncio.wait_for(request.read(), body_s)
        except web.HTTPRequestEntityTooLarge:
            _count(publisher, channel, "too_large")
            return _text(413, f"body over {limit} bytes")
        except TimeoutError:
            _count(publisher, channel, "too_slow")
            return web.Response(status=408, text=f"body not received within {body_s:.0f} s\n",
                                headers={"Connection": "close"})
        push = PushRequest(method=request.method,
                           headers={k.lower(): v for k, v in request.headers.items()},
                           query=dict(request.query), body=body)
        if request.method == "GET":
            return _echo(channel, push, configured[channel], clock())
        try:
            delivery = verifiers[channel](push, configured[channel], clock())
        except Unauthorized as e:
            log.warning("webhook %s refused: %s", channel, e)
            _count(publisher, channel, "unauthorized")
            return _text(401, "signature verification failed")
        except InvalidInput as e:
            await asyncio.to_thread(publisher.reject, channel, "webhook", f"webhook:{channel}",
                                    str(e), body)
            _count(publisher, channel, "invalid")
            return _text(200, "refused: dead-lettered")
        try:
            outcome = await asyncio.wait_for(_one_at_a_time(
                in_flight, (channel, delivery.delivery_id),
                lambda: asyncio.to_thread(publisher.push, channel, "webhook", delivery)),
                DEADLINE_S)
        except (TransientError, TimeoutError) as e:
            log.error("webhook %s delivery %s not produced in time: %s", channel,
                      delivery.delivery_id, e)
            _count(publisher, channel, "unavailable")
            return _text(503, "not stored; deliver again")
        _count(publisher, channel, "duplicate" if outcome.duplicate else "accepted")
        return web.Response(status=200, body=delivery.response,
                            content_type=delivery.content_type)

    in_flight: dict[tuple[str, str], _Turns] = {}

    async def health(_: web.Request) -> web.Response:
        return _text(200, "ok")

    app = web.Application(client_max_size=limit)
    app.router.add_post("/webhooks/{channel}", webhook)
    app.router.add_get("/webhooks/{channel}", webhook)
    app.router.add_get("/healthz", health)
    return app


def _echo(channel: str, push: PushRequest, secrets: PushSecrets, now: datetime
          ) -> web.Response:
    """WeChat checks a push URL with a signed GET whose `echostr` must come back verbatim."""
    if channel != "wechat":
        return _text(405, "use POST")
    from ingest import wechat

    try:
        return web.Response(status=200, body=wechat.verify_echo(push, secrets, now),
                            content_type="text/plain")
    except (Unauthorized, InvalidInput) as e:
        log.warning("webhook wechat URL check refused: %s", e)
        return _text(401, "signature verification failed")


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


class _Turns:
    """Requests carrying one delivery id, taking turns (see `_one_at_a_time`)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.waiting = 0


async def _one_at_a_time(in_flight: dict[tuple[str, str], _Turns], key: tuple[str, str],
                         work: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """Concurrent copies of one delivery (a channel retrying while the first is still being
    produced) take turns in this process, so the later ones find the id recorded and produce
    nothing. Across several receiver replicas it stays at-least-once: dedup drops the copy."""
    turns = in_flight.setdefault(key, _Turns())
    turns.waiting += 1
    try:
        async with turns.lock:
            return await work()
    finally:
        turns.waiting -= 1
        if turns.waiting == 0:
            in_flight.pop(key, None)


def _count(publisher: Publisher, channel: str, outcome: str) -> None:
    publisher.metrics.webhooks.labels(channel=channel, outcome=outcome).inc()


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event,
                idle_s: float = IDLE_S) -> None:
    """Serve until `stop` is set; `idle_s`: see IDLE_S."""
    # aiohttp closes a connection whose request has not fully arrived when its keep-alive timer
    # fires; the timer starts when the connection opens (default: an hour).
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=idle_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("webhook receiver listening on http://%s:%d/webhooks/{channel}", host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
