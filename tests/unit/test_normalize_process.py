from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from normalize.process import MAPPERS, normalize
from normalize.rates import RateTable
from schemas.errors import InvalidInput
from schemas.events import RawOrderReceived
from schemas.order import Channel

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shopify" / "orders_create.json"
RATES = RateTable.from_mapping({"USD": {"2026-01-01": "7.10"}})


def raw(channel: str, payload: dict[str, Any] | None = None) -> RawOrderReceived:
    body = payload if payload is not None else json.loads(FIXTURE.read_text(encoding="utf-8"))
    return RawOrderReceived(
        channel=channel,
        shop="jsmith.myshopify.com",
        native_id="820982911946154508",
        transport="webhook",
        received_at=datetime(2026, 1, 24, 4, 10, 16, tzinfo=UTC),
        delivery_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        payload=body,
    )


def test_an_unknown_channel_is_invalid_input_naming_the_channel_field() -> None:
    with pytest.raises(InvalidInput, match="unknown channel 'ebay'") as caught:
        normalize(raw("ebay"), RATES)
    assert caught.value.path == "channel"


def test_a_known_channel_without_a_mapper_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="no mapper for channel 'csv'") as caught:
        normalize(raw("csv"), RATES)
    assert caught.value.path == "channel"


def test_a_payload_sent_under_the_wrong_channel_is_refused_naming_the_missing_field() -> None:
    with pytest.raises(InvalidInput, match="tid: required field is missing"):
        normalize(raw("taobao"), RATES)


def test_a_shopify_payload_is_mapped_for_the_shop_that_sent_it() -> None:
    order = normalize(raw("shopify"), RATES)
    assert order.channel == Channel.SHOPIFY
    assert order.shop == "jsmith.myshopify.com"
    assert order.id == "SHOP820982911946154508"


def test_a_mapper_rejection_reaches_the_caller_as_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalize(raw("shopify", {"id": 1}), RATES)
    assert caught.value.path == "financial_status"


def test_every_mapper_is_registered_under_a_channel() -> None:
    assert set(MAPPERS) <= set(Channel)
    assert Channel.SHOPIFY in MAPPERS
