"""Example downstream consumer: read an orderhub order topic as JSON, commit after processing."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message

SUPPORTED_VERSIONS = frozenset({1})


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


def describe(value: dict[str, Any]) -> str:
    """Order id, status and shipments of any order event (OrderAllocated, OrderHeld, ...)."""
    order = value.get("order") or {}
    status = value.get("status") or order.get("status")
    if "shipments" in value or "hold" in value:  # the embedded order keeps its intake status
        status = "allocated" if "shipments" in value else f"held ({value['hold']['reason']})"
    shipments = "; ".join(
        f"{s['warehouse']}: " + ", ".join(f"{x['sku']}x{x['quantity']}" for x in s["lines"])
        for s in value.get("shipments", [])
    )
    return f"{order.get('id') or value.get('order_id')}  {status}  {shipments or '-'}"


def decode(msg: Message) -> dict[str, Any] | None:
    """The JSON value if this reader knows its schema_version; None (after an alert) if not."""
    try:
        value: Any = json.loads(msg.value() or b"null")
    except ValueError:
        value = None
    version = value.get("schema_version") if isinstance(value, dict) else None
    if isinstance(value, dict) and version in SUPPORTED_VERSIONS:
        return value
    where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
    print(f"ALERT: {where}: unknown schema_version {version!r}", file=sys.stderr)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", default="orders.allocated", help="orders.held, orders.status…")
    parser.add_argument("--group", default="example-order-reader", help="this reader's own group")
    parser.add_argument("--idle-exit", type=float, default=0, help="exit after N idle seconds")
    args = parse_args(parser)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # leave the group cleanly
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([args.topic_prefix + args.topic])
    idle_since = time.monotonic()
    try:
        while not args.idle_exit or time.monotonic() - idle_since < args.idle_exit:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if (err := msg.error()) is not None:
                if err.fatal():
                    raise KafkaException(err)
                print(f"warning: {err}", file=sys.stderr)
                continue
            # Skipping a version this reader does not know keeps the partition moving; a reader
            # that must not miss anything would exit here uncommitted and wait for an upgrade.
            if (value := decode(msg)) is not None:
                print(describe(value))
            consumer.commit(message=msg, asynchronous=False)  # at-least-once: after processing
            idle_since = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
