"""Example marketplace producer: one Shopify order as a RawOrderReceived envelope on orders.raw."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

TOPIC = "orders.raw"
# A native Shopify order (REST Order resource), trimmed, untouched otherwise. Its ids exceed 2**53:
# they stay JSON integers here (Python ints are exact), never floats; native_id is the string form.
ORDER: dict[str, Any] = {
    "id": 820982911946154508, "financial_status": "paid", "fulfillment_status": None,
    "created_at": "2026-01-23T23:10:15-05:00", "currency": "USD", "total_price": "199.00",
    "line_items": [{"id": 866550311766439020, "variant_id": 808950810, "sku": "IPOD2008PINK",
                    "title": "IPod Nano - 8GB", "quantity": 1, "price": "199.00"}],
    "shipping_address": {"name": "S*** J***", "phone": "***-***-0100", "country_code": "US",
                         "province": "Kentucky", "city": "Louisville", "zip": "40202"},
}


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Add --bootstrap (ORDERHUB_KAFKA__BOOTSTRAP, else the running hub's) and --topic-prefix."""
    env = os.environ.get
    state = Path(env("ORDERHUB_DATA_DIR", ".orderhub")) / "services.json"
    hub = json.loads(state.read_text())["bootstrap"] if state.exists() else None
    parser.add_argument("--bootstrap", default=env("ORDERHUB_KAFKA__BOOTSTRAP", hub))
    parser.add_argument("--topic-prefix", default=env("ORDERHUB_KAFKA__TOPIC_PREFIX", ""))
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("no broker: pass --bootstrap or start `orderhub up` in this directory")
    return args


def envelope(shop: str, order: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    """The RawOrderReceived value as plain JSON (schema_version 1)."""
    return {
        "schema_version": 1, "channel": "shopify", "shop": shop, "native_id": str(order["id"]),
        "transport": "webhook", "received_at": datetime.now(UTC).isoformat(),
        "delivery_id": delivery_id, "payload": order,
    }


def check_contract(value: bytes) -> None:
    """Validate with orderhub's own model when orderhub is importable (optional for producers)."""
    try:
        from schemas.events import RawOrderReceived
    except ImportError:
        return
    RawOrderReceived.model_validate_json(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shop", default="demo-shop")
    parser.add_argument("--order-id", type=int, default=ORDER["id"], help="native Shopify id")
    # A real webhook passes the channel's delivery id (Shopify: X-Shopify-Webhook-Id), so that a
    # redelivery carries the same one and orderhub recognises it.
    parser.add_argument("--delivery-id", default=f"webhook:{uuid.uuid4()}")
    args = parse_args(parser)

    value = envelope(args.shop, {**ORDER, "id": args.order_id}, args.delivery_id)
    data = json.dumps(value, ensure_ascii=False).encode()
    check_contract(data)
    key = f"{value['channel']}:{value['shop']}:{value['native_id']}"
    # acks=all + idempotence: a retried send is neither lost nor duplicated in its partition.
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all",
                         "enable.idempotence": True, "client.id": "example-shopify-webhook"})
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            print(f"{key} -> {msg.topic()}[{msg.partition()}]@{msg.offset()}")

    producer.produce(args.topic_prefix + TOPIC, key=key.encode(), value=data,
                     on_delivery=on_delivery)
    if producer.flush(30) or errors:
        raise SystemExit(f"not acknowledged: {errors[0] if errors else 'flush timed out'}")


if __name__ == "__main__":
    main()
