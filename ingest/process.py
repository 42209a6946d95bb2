"""Pure ingest logic: a merchant's documents → RawOrderReceived envelopes or rejections."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

from ingest import amazon, csv, douyin, jd, pdd, shopify, taobao, wechat
from ingest.files import Document
from schemas.errors import InvalidInput
from schemas.events import RawOrderReceived
from schemas.order import Channel

# Channel adapters that know how to unwrap API responses and find the native id.
ADAPTERS: Mapping[Channel, ModuleType] = {
    Channel.TAOBAO: taobao, Channel.JD: jd, Channel.PDD: pdd, Channel.DOUYIN: douyin,
    Channel.WECHAT: wechat, Channel.SHOPIFY: shopify, Channel.AMAZON: amazon, Channel.CSV: csv,
}


@dataclass(frozen=True)
class Rejected:
    """Input that cannot become an envelope: it goes to the DLQ with this reason."""

    position: str
    reason: str
    original: bytes


def adapter_for(channel: str) -> ModuleType:
    """The adapter of a channel, or InvalidInput explaining which channels are accepted."""
    supported = ", ".join(c.value for c in ADAPTERS)
    try:
        known = Channel(channel)
    except ValueError:
        raise InvalidInput(f"unknown channel {channel!r}; supported: {supported}") from None
    if known not in ADAPTERS:
        raise InvalidInput(f"channel {channel!r} is not supported yet; supported: {supported}")
    return ADAPTERS[known]


def raw_key(envelope: RawOrderReceived) -> str:
    """The orders.raw key: {channel}:{shop}:{native order id}."""
    return f"{envelope.channel}:{envelope.shop}:{envelope.native_id}"


def envelopes(
    channel: str, shop: str, documents: Iterable[Document], *, source: str,
    received_at: datetime, adapter: Any | None = None,
) -> Iterator[RawOrderReceived | Rejected]:
    """One envelope per order found in the documents; a document that fails is rejected whole.

    `source` identifies the file (name + content digest) so that importing the same file again
    yields the same delivery ids. `adapter` overrides the channel's module (a CSV adapter bound
    to the shop's column mapping).
    """
    adapter = adapter or adapter_for(channel)
    for doc in documents:
        if doc.error is not None:
            yield Rejected(doc.position, doc.error, doc.raw)
            continue
        try:
            payloads = adapter.unwrap(doc.value)
            for i, payload in enumerate(payloads):
                yield _envelope(channel, shop, adapter, payload, f"{source}:{doc.position}:{i}",
                                received_at)
        except InvalidInput as e:
            yield Rejected(doc.position, str(e), doc.raw)


def _envelope(
    channel: str, shop: str, adapter: ModuleType, payload: Mapping[str, Any], delivery: str,
    received_at: datetime,
) -> RawOrderReceived:
    return RawOrderReceived(
        channel=channel, shop=shop, native_id=adapter.native_id(payload), transport="file",
        received_at=received_at, delivery_id=delivery, payload=dict(payload),
    )
