"""Notify stage wiring: order events → the send log; the sender delivers from there.

Inputs: orders.accepted (paid, and channel updates that carry a new status), orders.allocated
(allocated), orders.status (shipped with carrier and waybill, delivered, cancelled, refunded,
return received, returned after QC). For each event the merchant's matrix names channels; each
(order, event, channel) becomes one send-log row in the batch's transaction: `pending` with the
rendered message and the provider's template and parameters, due now or at the end of the SMS
quiet hours, or `skipped` with the reason (nobody reachable, no template). Skipped rows are
emitted at once as BuyerNotified(outcome=skipped); the sender (notify/sender.py, running in the
same worker) emits the others when they finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine

from notify import metrics, projection
from notify.channels import build_providers, configured
from notify.process import (
    Providers,
    Route,
    Skip,
    Trigger,
    idempotency_key,
    kind_of,
    quiet_until,
    route,
    triggers,
)
from notify.sender import Send, Sender, outputs
from notify.templates import TemplateError, TemplateSet, order_variables
from runtime.runner import Context, Emit, now_in_shanghai
from runtime.settings import NOTIFY_EVENTS, NotifySettings, Settings
from schemas.events import Event, OrderAccepted, OrderAllocated, OrderStatusChanged
from schemas.order import Order
from schemas.topics import ACCEPTED, ALLOCATED, STATUS, TopicSpec

Item = OrderAccepted | OrderAllocated | OrderStatusChanged
log = logging.getLogger(__name__)


class NotifyStage:
    name = "notify"
    sources: tuple[TopicSpec, ...] = (ACCEPTED, ALLOCATED, STATUS)

    def __init__(self, settings: NotifySettings, templates: TemplateSet,
                 registry: CollectorRegistry) -> None:
        self.settings = settings
        self.templates = templates
        self.providers: Providers = configured(settings)
        self.metrics = metrics.build(registry)
        self.planned = asyncio.Event()  # set when a committed batch planned sends

    def committed(self) -> None:
        """The runner committed a batch: wake the sender rather than let it sleep `poll_s`."""
        self.planned.set()

    def prepare(self, event: Event, ctx: Context) -> Item:
        assert isinstance(event, OrderAccepted | OrderAllocated | OrderStatusChanged)
        return event

    def project(self, conn: Connection, items: Sequence[Item], ctx: Context) -> list[Emit]:
        found = [t for item in items for t in triggers(item)]
        wanted = [t for t in found if self.settings.matrix.get(t.event)]
        if not wanted:
            return []
        orders = {i.order.id: i.order for i in items if not isinstance(i, OrderStatusChanged)}
        orders.update(projection.load_orders(
            conn, {t.order_id for t in wanted if t.order_id not in orders}))
        rows = [self._row(t, channel, orders[t.order_id], ctx.now)
                for t in wanted if t.order_id in orders
                for channel in self.settings.matrix[t.event]]
        projection.plan(conn, rows)
        for r in rows:
            self.metrics.planned.labels(event=r["event"], channel=r["channel"]).inc()
            if r["state"] == "skipped":
                self.metrics.skipped.labels(channel=r["channel"],
                                            reason=_label(r["skip_reason"])).inc()
        again = projection.skipped(conn, [(r["order_id"], r["event"], r["channel"])
                                          for r in rows])
        return [e for r in again for e in outputs(r)]

    async def background(self, engine: Engine, send: Send, stop: asyncio.Event,
                         clock: Callable[[], datetime] = now_in_shanghai) -> None:
        """The sender, for as long as the worker runs (runtime/worker.py starts it)."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            providers = build_providers(self.settings, session, clock)
            sender = Sender(engine, self.settings, providers, send, self.metrics, clock,
                            wake=self.planned)
            await sender.run(stop)

    def placeholders_in_use(self) -> list[str]:
        """Placeholder provider templates this configuration would send through: the provider
        refuses them, so each such send fails (visibly) until the merchant puts an approved one
        in its templates directory (`orderhub templates check` says the same)."""
        kinds = {"sms": self.providers.sms, "wechat": self.providers.wechat is not None}
        languages = {self.settings.language, *self.settings.languages.values()}
        found = set()
        for event, channels in self.settings.matrix.items():
            for kind in (k for k, on in kinds.items() if on and {k, "buyer"} & set(channels)):
                for language in languages:
                    t = self.templates.find(event, kind, language)
                    if t is not None and t.is_placeholder:
                        found.add(f"notify: template {t.id} still has the placeholder "
                                  f"{t.provider_template}; its sends will be refused")
        return sorted(found)

    def _row(self, trigger: Trigger, channel: str, order: Order, now: datetime
             ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "order_id": order.id, "event": trigger.event, "channel": channel,
            "claimed_at": now, "event_at": trigger.at, "due_at": now, "message": "",
            "idempotency_key": idempotency_key(order.id, trigger.event, channel),
        }
        where = route(channel, order, self.providers)
        if isinstance(where, Skip):
            return self._skip(row, where.reason, now)
        return self._pending(row, where, trigger, order, now)

    def _pending(self, row: dict[str, Any], where: Route, trigger: Trigger, order: Order,
                 now: datetime) -> dict[str, Any]:
        kind = kind_of(where.provider)
        language = self.settings.languages.get(order.channel.value, self.settings.language)
        template = self.templates.find(trigger.event, kind, language)
        if template is None:
            return self._skip(row, f"no {kind} template for {trigger.event}", now)
        variables = order_variables(order, trigger.event, carrier=trigger.carrier,
                                    waybill=trigger.waybill, reason=trigger.reason,
                                    qc_grade=trigger.qc_grade, language=template.language)
        try:
            rendered = self.templates.render(template, variables)
        except TemplateError as e:
            return self._skip(row, f"template {template.id} failed to render: {e}", now)
        params: dict[str, Any] = {"data": rendered.params, "page": rendered.page}
        if kind == "webhook":
            params = {"order": order.model_dump(mode="json"), "carrier": trigger.carrier,
                      "waybill": trigger.waybill, "reason": trigger.reason}
        quiet = (quiet_until(now, self.settings.quiet_start, self.settings.quiet_end)
                 if kind in self.settings.quiet_channels else None)
        if quiet is not None:
            self.metrics.deferred.labels(channel=row["channel"], reason="quiet_hours").inc()
        return {**row, "state": "pending", "provider": where.provider, "target": where.target,
                "template": template.provider_template or template.id,
                "message": rendered.text, "params": params, "due_at": quiet or now}

    def _skip(self, row: dict[str, Any], reason: str, now: datetime) -> dict[str, Any]:
        return {**row, "state": "skipped", "skip_reason": reason, "finished_at": now,
                "emitted_at": now}


def _label(reason: str) -> str:
    """A bounded metric label for a skip reason (template names stay out of labels)."""
    if reason.startswith("template "):
        return "template_error"
    if reason.startswith("no ") and reason.endswith(tuple(f"for {e}" for e in NOTIFY_EVENTS)):
        return "no_template"
    return reason


def build(settings: Settings, registry: CollectorRegistry) -> NotifyStage:
    templates = TemplateSet.load(settings.notify.templates_dir,
                                 sms_sign_name=settings.notify.sms_sign_name)
    stage = NotifyStage(settings.notify, templates, registry)
    for warning in stage.placeholders_in_use():
        log.warning("%s", warning)
    return stage
