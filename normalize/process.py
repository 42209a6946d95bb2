"""Normalize's pure decision: pick the channel's mapper and map one raw payload to an Order."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

from normalize import amazon, douyin, jd, pdd, shopify, taobao, wechat
from normalize.rates import RateTable
from schemas.errors import InvalidInput
from schemas.events import RawOrderReceived
from schemas.order import Channel, Order


class Mapper(Protocol):
    """A channel's mapper: native payload -> canonical Order, InvalidInput when it cannot."""

    def __call__(self, payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order: ...


MAPPERS: Mapping[Channel, Mapper] = MappingProxyType(
    {
        Channel.TAOBAO: taobao.map_order,
        Channel.JD: jd.map_order,
        Channel.PDD: pdd.map_order,
        Channel.DOUYIN: douyin.map_order,
        Channel.WECHAT: wechat.map_order,
        Channel.SHOPIFY: shopify.map_order,
        Channel.AMAZON: amazon.map_order,
    }
)


def with_csv(csv_mapper: Mapper) -> Mapping[Channel, Mapper]:
    """MAPPERS and the csv mapper, which needs the merchants' import mappings from settings."""
    return MappingProxyType({**MAPPERS, Channel.CSV: csv_mapper})


def normalize(
    raw: RawOrderReceived, rates: RateTable, mappers: Mapping[Channel, Mapper] = MAPPERS
) -> Order:
    """The canonical Order for one raw payload, or InvalidInput saying why there is none."""
    mapper = mappers.get(_channel(raw.channel))
    if mapper is None:
        raise InvalidInput(f"no mapper for channel {raw.channel!r} configured",
                           path="channel")
    return _no_negative_amounts(mapper(raw.payload, shop=raw.shop, rates=rates))


AMOUNTS = ("goods_amount", "shipping_amount", "discount_amount", "paid_amount", "paid_cny")


def _no_negative_amounts(order: Order) -> Order:
    """Every channel reports amounts as positive magnitudes (a discount too): a minus sign is
    garbage, and a negative price or total would flow into approvals and stock decisions."""
    for name in AMOUNTS:
        if getattr(order, name) < 0:
            raise InvalidInput(f"negative amount {getattr(order, name)}", path=name)
    for i, line in enumerate(order.lines):
        for name in ("unit_price", "line_total"):
            if getattr(line, name) < 0:
                raise InvalidInput(f"negative amount {getattr(line, name)}",
                                   path=f"lines[{i}].{name}")
    return order


def _channel(name: str) -> Channel:
    try:
        return Channel(name)
    except ValueError as e:
        raise InvalidInput(f"unknown channel {name!r}", path="channel") from e
