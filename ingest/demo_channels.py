"""Deterministic demo orders on every channel, each in that channel's own native order format."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from ingest import _demo_formats as formats
from ingest._demo_sale import Sale, make_sale
from ingest.demo import demo_catalogue, generate_shopify_orders
from normalize.process import MAPPERS
from normalize.rates import RateTable
from schemas.errors import ConfigurationError, InvalidInput
from schemas.order import Channel, Order

C = Channel
Builder = Callable[[random.Random, Sale], dict[str, Any]]

# A Chinese children's clothing merchant who also sells abroad: share of orders per channel.
CHANNEL_WEIGHTS: Mapping[Channel, int] = MappingProxyType(
    {C.TAOBAO: 25, C.PDD: 20, C.DOUYIN: 20, C.JD: 10, C.WECHAT: 10, C.SHOPIFY: 10, C.AMAZON: 5}
)
# Shopify orders keep the shops `generate_shopify_orders` gives them.
SHOPS: Mapping[Channel, str] = MappingProxyType(
    {
        C.TAOBAO: "tongqufang.tmall.com",
        C.JD: "tongqufang.jd.com",
        C.PDD: "pdd-mall-702318",
        C.DOUYIN: f"douyin-{formats.DOUYIN_SHOP_ID}",
        C.WECHAT: "wx-tongqufang",
        C.AMAZON: "amazon-na-tongqufang",
    }
)
_BUILDERS: Mapping[Channel, Builder] = MappingProxyType(
    {
        C.TAOBAO: formats.taobao,
        C.JD: formats.jd,
        C.PDD: formats.pdd,
        C.DOUYIN: formats.douyin,
        C.WECHAT: formats.wechat,
        C.AMAZON: formats.amazon,
    }
)
# Seconds between two orders. Shopify's own generator spaces its orders 20-900 s apart; at a
# tenth of the orders that is the same pace, so its orders interleave with the others.
_GAP = (5, 90)


@dataclass(frozen=True)
class DemoOrder:
    """One channel's native order object (the bare order, as its mapper takes it) and its shop."""

    channel: str
    shop: str
    payload: dict[str, Any]


def generate_orders(n: int, *, seed: int, start: datetime) -> list[DemoOrder]:
    """`n` paid orders spread over every channel in CHANNEL_WEIGHTS' proportions, oldest first.

    Every order sells 1-3 catalogue SKUs, 1-3 units each, and carries an id unique in the run.
    Times follow `start` (which must be aware); the same seed and start give the same orders.
    """
    if n < 0 or start.utcoffset() is None:
        raise ConfigurationError("demo orders need n >= 0 and an aware start")
    rng = random.Random(seed)
    channels = rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()), k=n)
    shopify = iter(generate_shopify_orders(channels.count(C.SHOPIFY), seed=seed, start=start))
    catalogue = demo_catalogue()
    sales: Counter[Channel] = Counter()
    timed: list[tuple[datetime, DemoOrder]] = []
    at = start
    for channel in channels:
        at += timedelta(seconds=rng.randint(*_GAP))
        if channel is C.SHOPIFY:
            shop, payload = next(shopify)
            timed.append((datetime.fromisoformat(payload["created_at"]),
                          DemoOrder(channel.value, shop, payload)))
            continue
        sale = make_sale(rng, sales[channel], at, catalogue)
        sales[channel] += 1
        timed.append((at, DemoOrder(channel.value, SHOPS[channel], _BUILDERS[channel](rng, sale))))
    timed.sort(key=lambda pair: pair[0])  # stable: equal times keep their generated order
    return [order for _, order in timed]


def required_stock_all(orders: Sequence[DemoOrder], rates: RateTable) -> dict[str, int]:
    """Units per merchant SKU that the orders need, read from the lines their mappers produce."""
    needed: dict[str, int] = {}
    for order in orders:
        for line in _mapped(order, rates).lines:
            if line.sku is None:
                raise InvalidInput(f"a {order.channel} demo order has a line without a SKU")
            needed[line.sku] = needed.get(line.sku, 0) + line.quantity
    return needed


def _mapped(order: DemoOrder, rates: RateTable) -> Order:
    return MAPPERS[Channel(order.channel)](order.payload, shop=order.shop, rates=rates)
