"""The notify stage and its sender against local Aliyun SMS, WeChat and merchant-webhook servers
that check signatures and bodies, on the real broker and Postgres."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from normalize.process import normalize
from normalize.rates import RateTable
from notify import metrics
from notify.channels import build_providers
from notify.process import quiet_until
from notify.providers.merchant_webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from notify.sender import Sender
from notify.templates import TemplateError, TemplateSet
from runtime.settings import NotifySettings, Settings
from runtime.stages import STAGES
from schemas.base import SHANGHAI
from schemas.events import (
    BuyerNotified,
    DeadLetter,
    OrderAllocated,
    OrderStatusChanged,
    Shipment,
    ShipmentLine,
)
from schemas.order import Order, OrderStatus, Recipient
from schemas.topics import ALLOCATED, DLQ, NOTIFIED, RAW, STATUS
from tests.builders import raw, shopify_fixture
from tests.channel_servers.aliyun_sms import FakeAliyunSms
from tests.channel_servers.base import serve
from tests.channel_servers.wechat_message import FakeWeChatMessages
from tests.conftest import run_cli
from tests.stagekit import KafkaIO, run_stage

T = TypeVar("T")
NOON = datetime(2026, 11, 11, 12, 0, tzinfo=SHANGHAI)
SIGN = "茶叶旗舰店"
HOOK_SECRET = "merchant-hook-secret"
OPENID = "oAbCd5FgHiJkLmNoPqRsTuVwXyZ0"


class Clock:
    def __init__(self, now: datetime = NOON) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class HookReceiver:
    """The merchant's endpoint: verifies the signature on the raw body, records event ids."""

    events: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(HOOK_SECRET, body, request.headers.get(SIGNATURE_HEADER)):
            self.refused += 1
            return web.Response(status=401)
        event = json.loads(body)
        assert event["event_id"] == request.headers[EVENT_ID_HEADER]
        self.events.append(event)
        return web.Response(status=204)


@dataclass
class World:
    settings: Settings
    engine: Engine
    io: KafkaIO
    clock: Clock
    sms: FakeAliyunSms
    wechat: FakeWeChatMessages
    hook: HookReceiver

    def stage(self, spec: Any, items: list[tuple[str, Any]]) -> None:
        self.io.produce(spec, items)
        records = self.io.read(spec, expect=len(items))
        run_stage("notify", self.settings, self.io, records[-len(items):], self.clock)

    def send_all(self, rounds: int = 1) -> None:
        """`rounds` sender rounds, each with a fresh sender (as after a restart)."""
        for _ in range(rounds):
            run(lambda session: self._sender(session).round())

    def _sender(self, session: aiohttp.ClientSession) -> Sender:
        n = self.settings.notify
        providers = build_providers(n, session, self.clock)
        return Sender(self.engine, n, providers, self.io.send,
                      metrics.build(CollectorRegistry()), self.clock)

    def log(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(
                "SELECT order_id, event, channel, state, provider, target, attempts, "
                "skip_reason, last_error, due_at, idempotency_key, message "
                "FROM notifications ORDER BY id")).mappings()]

    def notified(self, expect: int) -> list[BuyerNotified]:
        return [BuyerNotified.model_validate_json(r.value or b"")
                for r in self.io.read(NOTIFIED, expect=expect, timeout=10)]


def run(work: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await work(session)

    return asyncio.run(main())


def provider_templates() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The built-in templates' Aliyun codes and WeChat ids with their parameter names, so the
    fake providers accept exactly what the merchant would have had approved."""
    templates = TemplateSet.load()
    sms: dict[str, set[str]] = {}
    wechat: dict[str, set[str]] = {}
    for event in ("paid", "allocated", "shipped", "delivered", "cancelled", "refunded",
                  "return_received", "returned"):
        for kind, into in (("sms", sms), ("wechat", wechat)):
            t = templates.find(event, kind, "zh_CN")
            if t is not None and t.provider_template:
                into[t.provider_template] = set(t.params)
    return sms, wechat


@pytest.fixture
def world(settings: Settings, engine: Engine) -> Iterator[World]:
    clock = Clock()
    sms_codes, wechat_ids = provider_templates()
    sms = FakeAliyunSms(now=lambda: clock().timestamp(), sign_names={SIGN}, templates=sms_codes)
    wechat = FakeWeChatMessages(now=lambda: clock().timestamp(), templates=wechat_ids)
    hook = HookReceiver()
    with serve(sms.app()) as s, serve(wechat.app()) as w, serve(hook.app()) as h:
        notify = NotifySettings.model_validate({**settings.notify.model_dump(), **{
            "matrix": {"allocated": ("buyer",), "shipped": ("buyer", "webhook"),
                       "delivered": ("log",)},
            "sms_endpoint": s.url, "sms_access_key_id": sms.access_key_id,
            "sms_access_key_secret": sms.access_key_secret, "sms_sign_name": SIGN,
            "wechat_base_url": w.url, "wechat_appid": wechat.appid,
            "wechat_secret": wechat.secret, "wechat_mode": "template",
            "webhook_url": f"{h.url}/hook", "webhook_secret": HOOK_SECRET,
            "backoff_s": 0.01, "max_backoff_s": 0.05, "max_attempts": 4,
        }})
        configured = settings.model_copy(update={"notify": notify})
        yield World(configured, engine, KafkaIO(configured), clock, sms, wechat, hook)


def an_order(world: World, native: int, phone: str | None = "13812345678",
             openid: str | None = None) -> Order:
    base = normalize(raw(shopify_fixture(id=native, name=f"#{native}")),
                     RateTable.from_mapping(world.settings.rates))
    recipient = (base.recipient or Recipient()).model_copy(update={"phone": phone})
    return base.model_copy(update={"recipient": recipient, "buyer_openid": openid})


def allocated(order: Order, at: datetime = NOON) -> OrderAllocated:
    shipment = Shipment(warehouse="WH-HZ", reason="nearest",
                        lines=(ShipmentLine(line_no=1, sku="IPOD2008PINK", quantity=1),))
    return OrderAllocated(order=order, shipments=(shipment,), rule="test", allocated_at=at)


def test_the_right_message_reaches_the_right_channel(world: World) -> None:
    world.wechat.followers.add(OPENID)
    by_wechat = an_order(world, 9001, openid=OPENID)
    by_sms = an_order(world, 9002)
    nobody = an_order(world, 9003, phone="~AgAAAAOq7fYCBVp0mwCXb2Fw9QkLm4n1TzRyE0dVuH8=~Rf6m~0~~")
    world.stage(ALLOCATED, [(o.id, allocated(o)) for o in (by_wechat, by_sms, nobody)])

    world.send_all()

    [(kind, body)] = world.wechat.delivered
    assert (kind, body["touser"]) == ("template", OPENID)
    assert body["client_msg_id"] == next(r["idempotency_key"] for r in world.log()
                                         if r["order_id"] == by_wechat.id)
    [sms] = world.sms.sent
    assert sms["PhoneNumbers"] == "13812345678" and sms["SignName"] == SIGN
    assert by_sms.native_id in sms["TemplateParam"]
    states = {r["order_id"]: (r["state"], r["provider"], r["skip_reason"]) for r in world.log()}
    assert states[by_wechat.id] == ("sent", "wechat_template", None)
    assert states[by_sms.id] == ("sent", "aliyun_sms", None)
    assert states[nobody.id][0] == "skipped" and "ciphertext" in states[nobody.id][2]
    outcomes = {(n.order_id, n.outcome) for n in world.notified(expect=3)}
    assert outcomes == {(by_wechat.id, "sent"), (by_sms.id, "sent"), (nobody.id, "skipped")}


def test_the_merchant_webhook_gets_a_signed_shipment_with_carrier_and_waybill(
    world: World,
) -> None:
    order = an_order(world, 9010)
    payload = shopify_fixture(id=9010, name="#9010")
    payload["shipping_address"]["phone"] = "+86 138 1234 5678"
    world.io.produce(RAW, [(order.id, raw(payload))])
    run_stage("normalize", world.settings, world.io, world.io.read(RAW, expect=1))
    shipped = OrderStatusChanged(order_id=order.id, status=OrderStatus.SHIPPED, at=NOON,
                                 source="shopify", carrier="顺丰速运", waybill="SF1234567890")
    world.stage(STATUS, [(order.id, shipped)])

    world.send_all()

    [event] = world.hook.events
    assert (event["order_id"], event["event"], event["carrier"], event["waybill"]) == (
        order.id, "shipped", "顺丰速运", "SF1234567890")
    assert world.hook.refused == 0
    sms = world.sms.sent[-1]
    assert "SF1234567890" in sms["TemplateParam"]


def test_a_replayed_input_and_a_restarted_sender_send_nothing_twice(world: World) -> None:
    order = an_order(world, 9020)
    world.stage(ALLOCATED, [(order.id, allocated(order))])
    world.stage(ALLOCATED, [(order.id, allocated(order))])  # redelivered after a rebalance

    world.send_all(rounds=3)  # three senders one after the other

    assert len(world.sms.sent) == 1 and world.sms.replayed_out_ids == []
    [row] = world.log()
    assert (row["state"], row["attempts"]) == ("sent", 1)


def test_a_send_whose_sender_died_is_retried_with_the_same_key_once_its_lease_ends(
    world: World,
) -> None:
    world.wechat.followers.add(OPENID)
    order = an_order(world, 9030, openid=OPENID)
    world.stage(ALLOCATED, [(order.id, allocated(order))])
    with world.engine.begin() as conn:  # a sender claimed it, called WeChat, then died
        conn.execute(text("UPDATE notifications SET state = 'sending', lease_until = :t"),
                     {"t": NOON + timedelta(seconds=60)})
    [row] = world.log()
    world.send_all()
    assert world.wechat.delivered == []  # the lease still holds
    run(lambda s: _wechat_direct(world, s, row))  # what the dead sender had delivered

    world.clock.now = NOON + timedelta(seconds=61)
    world.send_all()

    assert len(world.wechat.delivered) == 1
    assert world.wechat.replayed_client_msg_ids == [row["idempotency_key"]]
    assert world.log()[0]["state"] == "sent"


async def _wechat_direct(world: World, session: aiohttp.ClientSession,
                         row: dict[str, Any]) -> None:
    from notify.providers.wechat_message import WeChatMessages

    n = world.settings.notify
    assert n.wechat_secret is not None and n.wechat_appid is not None
    client = WeChatMessages(n.wechat_base_url, n.wechat_appid, n.wechat_secret.get_secret_value(),
                            session, world.clock)
    with world.engine.connect() as conn:
        full = dict(conn.execute(text("SELECT * FROM notifications WHERE id = (SELECT min(id) "
                                      "FROM notifications)")).mappings().one())
    await client.template(full["target"], full["template"], full["params"]["data"],
                          row["idempotency_key"])


def test_throttling_is_retried_with_backoff_and_then_succeeds(world: World) -> None:
    world.sms.throttle_next = 2  # isv.BUSINESS_LIMIT_CONTROL twice
    order = an_order(world, 9040)
    world.stage(ALLOCATED, [(order.id, allocated(order))])

    for _ in range(3):
        world.send_all()
        world.clock.now += timedelta(seconds=1)

    [row] = world.log()
    assert (row["state"], row["attempts"]) == ("sent", 3)
    assert len(world.sms.sent) == 1


def test_retries_are_bounded_then_the_send_is_failed_and_dead_lettered(world: World) -> None:
    world.sms.busy_next = 10  # HTTP 503 every time
    order = an_order(world, 9050)
    world.stage(ALLOCATED, [(order.id, allocated(order))])

    for _ in range(5):
        world.send_all()
        world.clock.now += timedelta(seconds=1)

    [row] = world.log()
    assert (row["state"], row["attempts"]) == ("failed", 4)
    assert "gave up after 4 attempts" in row["last_error"]
    [dead] = [DeadLetter.model_validate_json(r.value or b"")
              for r in world.io.read(DLQ, expect=1)]
    assert (dead.stage, dead.error_class, dead.key) == ("notify", "NotificationFailed", order.id)
    assert "13812345678" not in json.dumps(dead.model_dump(mode="json"))
    [notified] = world.notified(expect=1)
    assert (notified.outcome, notified.attempts) == ("failed", 4)
    with world.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dead_letters WHERE stage = 'notify'")
                            ).scalar_one() == 1


def test_a_refusal_fails_at_once_without_retrying(world: World) -> None:
    order = an_order(world, 9060, phone="19912345678")
    world.sms.sign_names = {"another shop"}  # isv.SMS_SIGNATURE_ILLEGAL
    world.stage(ALLOCATED, [(order.id, allocated(order))])

    world.send_all()

    [row] = world.log()
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert "isv.SMS_SIGNATURE_ILLEGAL" in row["last_error"]


def test_quiet_hours_defer_an_sms_to_eight_and_never_drop_it(world: World) -> None:
    world.clock.now = datetime(2026, 11, 11, 23, 10, tzinfo=SHANGHAI)
    order = an_order(world, 9070)
    world.stage(ALLOCATED, [(order.id, allocated(order, at=world.clock.now))])

    world.send_all()
    world.clock.now = datetime(2026, 11, 12, 7, 59, tzinfo=SHANGHAI)
    world.send_all()
    assert world.sms.sent == []
    [row] = world.log()
    assert row["due_at"] == datetime(2026, 11, 12, 8, 0, tzinfo=SHANGHAI)

    world.clock.now = datetime(2026, 11, 12, 8, 0, 5, tzinfo=SHANGHAI)
    world.send_all()

    assert len(world.sms.sent) == 1
    assert world.log()[0]["state"] == "sent"


def test_an_unconfigured_event_sends_nothing_and_logs_only_what_is_enabled(
    world: World,
) -> None:
    order = an_order(world, 9080)
    delivered = OrderStatusChanged(order_id=order.id, status=OrderStatus.DELIVERED, at=NOON,
                                   source="shopify")
    cancelled = delivered.model_copy(update={"status": OrderStatus.CANCELLED})
    world.io.produce(RAW, [(order.id, raw(shopify_fixture(id=9080, name="#9080")))])
    run_stage("normalize", world.settings, world.io, world.io.read(RAW, expect=1))
    world.stage(STATUS, [(order.id, delivered), (order.id, cancelled)])

    world.send_all()

    assert [(r["event"], r["channel"], r["state"]) for r in world.log()] == [
        ("delivered", "log", "sent")]


def test_a_bad_template_directory_stops_the_stage_at_start_naming_the_template(
    world: World, tmp_path: Path,
) -> None:
    built_in = Path(__file__).resolve().parents[2] / "notify" / "templates"
    source = next(built_in.glob("zh_CN.*"))
    broken = source.read_text(encoding="utf-8").replace("{{ order_no }}", "{{ order_number }}")
    (tmp_path / source.name).write_text(broken, encoding="utf-8")
    settings = world.settings.model_copy(update={"notify": NotifySettings.model_validate(
        {**world.settings.notify.model_dump(), "templates_dir": tmp_path})})

    with pytest.raises(TemplateError) as refused:
        STAGES["notify"].build(settings, CollectorRegistry())

    assert "order_number" in str(refused.value) and source.name in str(refused.value)


def test_a_failed_send_is_listed_with_its_reason_and_retried_once_fixed(world: World) -> None:
    world.sms.sign_names = {"another shop"}  # the merchant's signature is not approved yet
    order = an_order(world, 9090)
    world.stage(ALLOCATED, [(order.id, allocated(order))])
    world.send_all()

    listed = run_cli("notifications", "list", "--state", "failed", "--json")
    [failed] = json.loads(listed.stdout)
    assert (failed["order_id"], failed["provider"]) == (order.id, "aliyun_sms")
    assert "isv.SMS_SIGNATURE_ILLEGAL" in failed["last_error"]
    misuse = run_cli("notifications", "retry", "999999")
    assert misuse.returncode == 2 and "no notification [999999]" in misuse.stderr

    world.sms.sign_names = {SIGN}  # approved
    retried = run_cli("notifications", "retry", "--failed")
    assert retried.returncode == 0 and "1 send(s) queued again" in retried.stderr
    now = datetime.now(SHANGHAI)  # the CLI queued it for now; the sender runs after quiet hours
    world.clock.now = (quiet_until(now, time(22, 0), time(8, 0)) or now) + timedelta(seconds=1)
    world.send_all()

    [row] = world.log()
    assert (row["state"], row["attempts"]) == ("sent", 1)
    assert len(world.sms.sent) == 1
    outcomes = [n.outcome for n in world.notified(expect=2)]
    assert outcomes == ["failed", "sent"]


def test_the_stage_warns_at_start_about_placeholder_templates_it_would_send_through(
    world: World,
) -> None:
    stage = STAGES["notify"].build(world.settings, CollectorRegistry())

    warnings = stage.placeholders_in_use()  # type: ignore[attr-defined]

    assert any("allocated.sms.zh_CN" in w and "SMS_000000" in w for w in warnings)
    assert any("shipped.wechat.zh_CN" in w for w in warnings)
    assert not any(".delivered." in w for w in warnings)  # delivered goes to the log only


def test_each_provider_is_paced_by_its_own_configured_rate(world: World) -> None:
    async def providers(session: aiohttp.ClientSession) -> dict[str, float]:
        built = build_providers(world.settings.notify, session, world.clock)
        return {name: p.limiter.rate for name, p in built.items() if name != "log"}

    rates = run(providers)

    n = world.settings.notify
    assert rates == {"aliyun_sms": n.sms_rate_per_s, "wechat_template": n.wechat_rate_per_s,
                     "webhook": n.webhook_rate_per_s}


def test_a_worker_stopped_mid_send_records_what_the_provider_accepted(
    world: World, settings: Settings,
) -> None:
    """SIGTERM cancels the sender while SMS calls are in flight: the round still marks them
    sent, so the restarted worker sends none of them again."""
    slow = FakeAliyunSms(now=lambda: world.clock().timestamp(), sign_names={SIGN},
                         templates=world.sms.templates)

    @web.middleware
    async def delay(request: web.Request, handler: Any) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        response: web.StreamResponse = await handler(request)
        return response

    app = slow.app()
    app.middlewares.append(delay)
    orders = [an_order(world, 9100 + i, phone=f"1391234{i:04d}") for i in range(3)]
    world.stage(ALLOCATED, [(o.id, allocated(o)) for o in orders])
    with serve(app) as server:
        notify = NotifySettings.model_validate({**world.settings.notify.model_dump(),
                                                "sms_endpoint": server.url})

        async def stop_mid_round(session: aiohttp.ClientSession) -> None:
            sender = Sender(world.engine, notify, build_providers(notify, session, world.clock),
                            world.io.send, metrics.build(CollectorRegistry()), world.clock)
            task = asyncio.create_task(sender.run(asyncio.Event()))
            await asyncio.sleep(0.2)  # the three calls are at the server now
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(stop_mid_round)

    assert len(slow.sent) == 3
    assert {r["state"] for r in world.log()} == {"sent"}
    world.send_all()  # the restarted worker
    assert len(slow.sent) == 3 and world.sms.sent == []
