"""Test data builders: realistic Shopify payloads and the envelopes around them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ingest.demo import generate_shopify_orders
from schemas.base import SHANGHAI
from schemas.events import RawOrderReceived

FIXTURES = Path(__file__).parent / "fixtures"
RECEIVED = datetime(2026, 11, 11, 1, 0, tzinfo=UTC)


def shopify_fixture(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / "shopify" / "orders_create.json").read_text())
    payload.update(changes)
    return payload


def raw(payload: dict[str, Any], *, shop: str = "shop.myshopify.com", channel: str = "shopify",
        delivery: str = "d1") -> RawOrderReceived:
    return RawOrderReceived(channel=channel, shop=shop, native_id=str(payload.get("id")),
                            transport="webhook", received_at=RECEIVED, delivery_id=delivery,
                            payload=copy.deepcopy(payload))


def demo_orders(n: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    return generate_shopify_orders(n, seed=seed, start=datetime(2026, 11, 11, tzinfo=SHANGHAI))


def one_purchase(
    channel: str, *, order_id: str, paid_at: datetime, province: str = "江苏省",
    city: str = "苏州市", skus: tuple[tuple[str, int, str], ...] = (
        ("DY-MUG-350-BLU", 2, "54.90"), ("TEA-GIFT-01", 1, "44.90")),
) -> dict[str, Any]:
    """The same purchase as PDD or Douyin report it (each in its own units and time format):
    a Suzhou recipient, two SKUs, ¥154.70, paid at `paid_at`."""
    total = sum(Decimal(price) * qty for _, qty, price in skus)
    if channel == "pdd":
        body = json.loads((FIXTURES / "pdd" / "order_info_awaiting_shipment.json").read_text())
        order = body["order_info_get_response"]["order_info"]
        template = order["item_list"][0]
        stamp = paid_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        order.update(order_sn=order_id, province=province, city=city, pay_amount=float(total),
                     goods_amount=float(total), discount_amount=0.0, postage=0.0,
                     seller_discount=0.0, platform_discount=0.0, pay_time=stamp,
                     confirm_time=stamp, created_time=stamp, updated_at=stamp,
                     item_list=[{**template, "outer_id": sku, "goods_count": qty,
                                 "goods_price": float(price)} for sku, qty, price in skus])
        return dict(order)
    if channel == "douyin":
        body = json.loads((FIXTURES / "douyin" / "order_detail_preparing.json").read_text())
        order = body["data"]["shop_order_detail"]
        template = order["sku_order_list"][0]
        seconds = int(paid_at.timestamp())
        fen = int(total * 100)
        order.update(order_id=order_id, pay_time=seconds, create_time=seconds - 20,
                     update_time=seconds + 5, order_amount=fen, pay_amount=fen, post_amount=0,
                     promotion_amount=0)
        order["post_addr"]["province"]["name"] = province
        order["post_addr"]["city"]["name"] = city
        order["sku_order_list"] = [
            {**template, "order_id": f"{order_id}{i}", "out_sku_id": sku, "code": sku,
             "item_num": qty, "pay_amount": int(Decimal(price) * qty * 100),
             "origin_amount": int(Decimal(price) * qty * 100), "sku_order_amount": None}
            for i, (sku, qty, price) in enumerate(skus)]
        return dict(order)
    raise ValueError(channel)
