"""Test data builders: realistic Shopify payloads and the envelopes around them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.demo import generate_shopify_orders
from schemas.base import SHANGHAI
from schemas.events import RawOrderReceived

FIXTURES = Path(__file__).parent / "fixtures"
RECEIVED = datetime(2026, 11, 11, 1, 0, tzinfo=UTC)


def shopify_fixture(**changes: Any) -> dict[str, Any]:
    payload = json.loads((FIXTURES / "shopify" / "orders_create.json").read_text())
    payload.update(changes)
    return payload


def raw(payload: dict[str, Any], *, shop: str = "shop.myshopify.com", channel: str = "shopify",
        delivery: str = "d1") -> RawOrderReceived:
    return RawOrderReceived(channel=channel, shop=shop, native_id=str(payload.get("id")),
                            transport="webhook", received_at=RECEIVED, delivery_id=delivery,
                            payload=copy.deepcopy(payload))


def demo_orders(n: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    return generate_shopify_orders(n, seed=seed, start=datetime(2026, 11, 11, tzinfo=SHANGHAI))
