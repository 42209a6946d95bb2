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
    # The embedded order keeps the status it had when the stage received it; the event says
    # what happened since.
    status = value.get("status") or order.get("status")
    if "shipments" in value:
        status = "allocated"
    if "hold" in value:
        status = f"held ({value['hold']['reason']})"
    shipments = "; ".join(
        f"{s['warehouse']}: " + ", ".join(f"{x['sku']}x{x['quantity']}" for x in s["lines"])
        for s in value.get("shipments", [])
    )
    return f"{order.get('id') or value.get('order_id')}  {status}  {shipments or '-'}"


def decode(msg: Message) -> dict[str, Any] | None:
    """The JSON value if this reader knows its schema_version; None (after an alert) if not."""
    try:
        value = json.loads(msg.value() or b"null")
    except ValueError:
        value = None
    version = value.get("schema_version") if isinstance(value, dict) else None
    if version in SUPPORTED_VERSIONS:
        return value  # type: ignore[return-value]  # a dict: checked just above
    print(f"ALERT: {msg.topic()}[{msg.partition()}]@{msg.offset()}: schema_version {version!r}, "
          f"this reader knows {sorted(SUPPORTED_VERSIONS)}", file=sys.stderr)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", default="orders.allocated", help="orders.held, orders.status…")
    parser.add_argument("--group", default="example-order-reader", help="this reader's own group")
    parser.add_argument("--stop-on-unknown", action="store_true",
                        help="exit uncommitted on an unknown schema_version instead of skipping")
    parser.add_argument("--idle-exit", type=float, default=0, help="exit after N idle seconds")
    args = parse_args(parser)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave the group cleanly (finally)
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
            value = decode(msg)
            if value is not None:
                print(describe(value))
            elif args.stop_on_unknown:
                return 1  # not committed: read again once this reader is upgraded
            consumer.commit(message=msg, asynchronous=False)  # at-least-once: after processing
            idle_since = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
