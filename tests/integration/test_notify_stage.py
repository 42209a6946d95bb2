from __future__ import annotations

import asyncio
from datetime import datetime

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from normalize.process import normalize
from normalize.rates import RateTable
from notify import metrics
from notify.channels import LogProvider
from notify.sender import Sender
from runtime.runner import now_in_shanghai
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.events import BuyerNotified, OrderAllocated, Shipment, ShipmentLine
from schemas.topics import ALLOCATED, NOTIFIED
from tests.builders import raw, shopify_fixture
from tests.stagekit import KafkaIO, run_stage


def _allocated(settings: Settings) -> OrderAllocated:
    order = normalize(raw(shopify_fixture()), RateTable.from_mapping(settings.rates))
    shipment = Shipment(warehouse="WH-HZ", reason="test",
                        lines=(ShipmentLine(line_no=1, sku="IPOD2008PINK", quantity=1),))
    return OrderAllocated(order=order, shipments=(shipment,), rule="test",
                          allocated_at=datetime(2026, 11, 11, 9, tzinfo=SHANGHAI))


def test_a_buyer_is_notified_once_even_when_the_allocation_is_delivered_twice(
    settings: Settings, engine: Engine
) -> None:
    io = KafkaIO(settings)
    allocated = _allocated(settings)
    io.produce(ALLOCATED, [(allocated.order.id, allocated)] * 2)
    records = io.read(ALLOCATED, expect=2)
    run_stage("notify", settings, io, records[:1])
    run_stage("notify", settings, io, records[1:])
    sender = Sender(engine, settings.notify, {"log": LogProvider()}, io.send,
                    metrics.build(CollectorRegistry()), now_in_shanghai)

    asyncio.run(sender.round())
    asyncio.run(sender.round())

    [notified] = [BuyerNotified.model_validate_json(r.value or b"")
                  for r in io.read(NOTIFIED, expect=1)]
    assert (notified.event, notified.channel, notified.outcome) == ("allocated", "log", "sent")
    assert "820982911946154508" in notified.message
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT channel, event, state, attempts FROM notifications")).all()
    assert [tuple(r) for r in rows] == [("log", "allocated", "sent", 1)]
