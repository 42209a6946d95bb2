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
    return mapper(raw.payload, shop=raw.shop, rates=rates)


def _channel(name: str) -> Channel:
    try:
        return Channel(name)
    except ValueError as e:
        raise InvalidInput(f"unknown channel {name!r}", path="channel") from e
