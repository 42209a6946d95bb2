"""The fault harness's load: realistic multi-channel orders and every awkward kind, with a log.

Every message the harness produces is an `Input` (key, channel, kind, canonical order id) in the
input log, which the checks compare the projection and the topics against once all has drained.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest.demo import demo_catalogue
from ingest.demo_channels import DemoOrder, generate_orders, required_stock_all
from ingest.process import adapter_for, raw_key
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.events import OrderStatusChanged, RawOrderReceived
from schemas.order import Channel, OrderStatus, canonical_id
from tests.builders import one_purchase

SEED = 20261124
DEMO_START = datetime(2026, 11, 11, tzinfo=SHANGHAI)
SPECIAL_START = datetime(2026, 12, 1, tzinfo=SHANGHAI)  # far from the demo orders' times
SCARCE_SKU = "FAULT-SCARCE-01"
SCARCE_STOCK = 3
HIGH_PRICE = "3000.00"  # × 2 units: ¥6,000, above the ¥5,000 approval threshold
KINDS = ("valid", "exact_duplicate", "suspected_duplicate", "high_value", "stock_out",
         "status_update", "return", "malformed")


@dataclass(frozen=True)
class Input:
    """One produced message: its topic key, channel, kind and the canonical order it concerns."""

    topic: str
    key: str
    channel: str
    kind: str
    order_id: str | None
    value: bytes = field(repr=False)
    detail: str = ""

    def log_line(self) -> str:
        row = {k: v for k, v in asdict(self).items() if k != "value"}
        return json.dumps(row, ensure_ascii=False)


@dataclass
class Load:
    """The orders of a run, produced wave by wave; status updates are made up as it goes."""

    waves: list[list[Input]]
    stock: dict[str, int]
    pairs: list[tuple[str, str]]  # suspected duplicates: (first report, second report)
    malformed: list[str]  # orders.raw keys that must end in the DLQ
    logged: list[Input] = field(default_factory=list)
    burst: list[list[Input]] = field(default_factory=list)  # the overload phase's waves

    def write_log(self, path: Path) -> None:
        path.write_text("".join(i.log_line() + "\n" for i in self.logged))


def _envelope(order: DemoOrder, delivery: str, received: datetime) -> RawOrderReceived:
    native = adapter_for(order.channel).native_id(order.payload)
    return RawOrderReceived(channel=order.channel, shop=order.shop, native_id=native,
                            transport="poll", received_at=received, delivery_id=delivery,
                            payload=order.payload)


def _raw(order: DemoOrder, kind: str, delivery: str, raw_topic: str) -> Input:
    envelope = _envelope(order, delivery, datetime.now(UTC))
    oid = canonical_id(Channel(order.channel), envelope.native_id)
    return Input(raw_topic, raw_key(envelope), order.channel, kind, oid,
                 envelope.model_dump_json().encode(), delivery)


def _purchase(channel: str, native: str, paid: datetime, skus: tuple[tuple[str, int, str], ...],
              city: tuple[str, str]) -> DemoOrder:
    payload = one_purchase(channel, order_id=native, paid_at=paid, province=city[0],
                           city=city[1], skus=skus)
    return DemoOrder(channel, f"{channel}-fault-shop", payload)


def build_load(orders: int, waves: int, raw_topic: str, rates: RateTable,
               seed: int = SEED, burst_orders: int = 0) -> Load:
    """`orders` demo orders split over `waves`, with duplicates, specials and malformed input.

    Per wave, besides its share of demo orders: every 10th order delivered again unchanged and
    every 15th from another delivery (exact duplicates); one purchase reported by PDD and Douyin
    90 s apart (a suspected duplicate); one order of ¥6,000 (approval); one order of the scarce
    SKU (only SCARCE_STOCK units exist); two malformed messages.
    """
    rng = random.Random(seed)
    everything = generate_orders(orders + burst_orders, seed=seed, start=DEMO_START)
    rng.shuffle(everything)  # both phases spread over the demo's whole time range
    demo, extra = everything[:orders], everything[orders:]
    catalogue = demo_catalogue()
    stock = {k: v * 2 + 20 for k, v in required_stock_all(everything, rates).items()}
    for sku in catalogue:
        stock[sku.sku] = stock.get(sku.sku, 0) + 200
    stock[SCARCE_SKU] = SCARCE_STOCK
    load = Load([], stock, [], [])
    per = max(len(demo) // waves, 1)
    for w in range(waves):
        part = demo[w * per:(w + 1) * per] if w < waves - 1 else demo[w * per:]
        wave: list[Input] = []
        for i, order in enumerate(part):
            first = _raw(order, "valid", f"fault:{w}:{i}", raw_topic)
            wave.append(first)
            if i % 10 == 3:
                wave.append(Input(first.topic, first.key, first.channel, "exact_duplicate",
                                  first.order_id, first.value, "same message again"))
            if i % 15 == 7:
                wave.append(_raw(order, "exact_duplicate", f"fault:{w}:{i}:again", raw_topic))
        wave += _specials(load, w, rng, raw_topic, catalogue[w % len(catalogue)].sku)
        rng.shuffle(wave)
        load.waves.append(wave)
    chunk = 50
    for start in range(0, len(extra), chunk):
        wave = []
        for i, order in enumerate(extra[start:start + chunk]):
            first = _raw(order, "valid", f"fault:burst:{start + i}", raw_topic)
            wave.append(first)
            if i % 10 == 3:
                wave.append(Input(first.topic, first.key, first.channel, "exact_duplicate",
                                  first.order_id, first.value, "same message again"))
        load.burst.append(wave)
    return load


def _specials(load: Load, w: int, rng: random.Random, raw_topic: str, sku: str) -> list[Input]:
    at = SPECIAL_START + timedelta(hours=3 * w)
    city = ("江苏省", "苏州市")
    skus = ((sku, 1 + w % 3, "59.00"),)
    dy_id, pdd_id = f"69310000{w:011d}", f"261201-{w:015d}"
    first = _raw(_purchase("douyin", dy_id, at, skus, city), "suspected_duplicate",
                 f"fault:pair:{w}:dy", raw_topic)
    second = _raw(_purchase("pdd", pdd_id, at + timedelta(seconds=90), skus, city),
                  "suspected_duplicate", f"fault:pair:{w}:pdd", raw_topic)
    assert first.order_id and second.order_id
    load.pairs.append((first.order_id, second.order_id))
    high = _raw(_purchase("pdd", f"261202-{w:015d}", at + timedelta(hours=1),
                          ((sku, 2, HIGH_PRICE),), ("广东省", "深圳市")),
                "high_value", f"fault:high:{w}", raw_topic)
    scarce = _raw(_purchase("douyin", f"69320000{w:011d}", at + timedelta(hours=2),
                            ((SCARCE_SKU, 1, "88.00"),), ("四川省", "成都市")),
                  "stock_out", f"fault:scarce:{w}", raw_topic)
    garbage_key = f"taobao:fault-garbage:{w}"
    garbage = Input(raw_topic, garbage_key, "taobao", "malformed", None,
                    b'{"channel": "taobao", "payload": {' + bytes([rng.randrange(256)]),
                    "not JSON")
    bad = RawOrderReceived(channel="jd", shop="fault-shop", native_id=f"BAD{w}",
                           transport="poll", received_at=datetime.now(UTC),
                           delivery_id=f"fault:bad:{w}", payload={"orderId": f"BAD{w}"})
    broken = Input(raw_topic, raw_key(bad), "jd", "malformed", None,
                   bad.model_dump_json().encode(), "a JD order without its fields")
    load.malformed += [garbage.key, broken.key]
    return [first, second, high, scarce, garbage, broken]


def status_update(topic: str, order_id: str, channel: str, status: OrderStatus,
                  kind: str, seq: int) -> Input:
    """A channel's report on orders.status: shipped (with a waybill), cancelled or refunded."""
    shipped = status is OrderStatus.SHIPPED
    change = OrderStatusChanged(
        order_id=order_id, status=status, at=datetime.now(SHANGHAI), source=channel,
        reason=None if shipped else f"fault harness {status.value}",
        carrier="SF" if shipped else None, waybill=f"SF{seq:012d}" if shipped else None)
    return Input(topic, order_id, channel, kind, order_id, change.model_dump_json().encode(),
                 status.value)


def valid_ids(inputs: Sequence[Input]) -> dict[str, str]:
    """Canonical id → kind of every order the input log says must exist in the end."""
    out: dict[str, str] = {}
    for i in inputs:
        if i.order_id and i.kind in ("valid", "suspected_duplicate", "high_value", "stock_out"):
            out[i.order_id] = i.kind
    return out

