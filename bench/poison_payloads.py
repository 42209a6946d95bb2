"""Malformed messages for orders.raw from a seed, each tagged with what is wrong with it."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.workload import demo_orders

HUGE_BYTES = 900_000
"""Under librdkafka's default message.max.bytes (1,000,000), which ingest's producer keeps."""
DEEP = 100_000
RECEIVED = datetime(2026, 11, 11, 1, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Poison:
    """One malformed message: its category, variant, key and value (None: a tombstone)."""

    category: str
    variant: str
    key: bytes | None
    value: bytes | None


Payload = dict[str, Any]
Build = Callable[[random.Random, str, Payload], tuple[str, bytes | None]]
"""(rng, shop, a valid Shopify payload) -> (variant, value)."""


def _envelope(shop: str, order: Payload, /, **changes: Any) -> dict[str, Any]:
    """The envelope ingest writes, around any payload (its native_id whatever the id was)."""
    e = {"schema_version": 1, "channel": "shopify", "shop": shop,
         "native_id": str(order.get("id")), "transport": "webhook",
         "received_at": RECEIVED.isoformat(), "delivery_id": f"poison:{shop}:{order.get('id')}",
         "payload": order}
    e.update(changes)
    return e


def _bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def _with(payload: Payload, **changes: Any) -> Payload:
    out = copy.deepcopy(payload)
    out.update(changes)
    return out


def _line(payload: Payload, **changes: Any) -> Payload:
    lines = [dict(item) for item in payload["line_items"]]
    lines[0].update(changes)
    return _with(payload, line_items=lines)


def truncated_json(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    whole = _bytes(_envelope(shop, p))
    return "cut", whole[: rng.randrange(1, len(whole) - 1)]


def binary(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variant = rng.choice(("random", "zeros", "gzip_magic"))
    body = rng.randbytes(rng.randrange(1, 4096))
    return variant, {"random": body, "zeros": bytes(len(body)),
                     "gzip_magic": b"\x1f\x8b\x08\x00" + body}[variant]


def invalid_utf8(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    whole = _bytes(_envelope(shop, _with(p, note="BAD")))
    bad = rng.choice((b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"))
    return "bad_sequence", whole.replace(b"BAD", bad)


def gb18030(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    e = _envelope(shop, _with(p, note="请尽快发货，谢谢！"))
    return "whole_message", json.dumps(e, ensure_ascii=False).encode("gb18030")


def utf16(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variant = rng.choice(("utf-16", "utf-16-le", "utf-32"))
    return variant, json.dumps(_envelope(shop, p), ensure_ascii=False).encode(variant)


def huge(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variant = rng.choice(("junk_field", "ten_thousand_lines", "long_json_string"))
    if variant == "junk_field":  # a megabyte of note, and no id
        body = _with(p, note="童" * (HUGE_BYTES // 3))
        body.pop("id")
    elif variant == "ten_thousand_lines":  # lines with a float quantity
        item = dict(p["line_items"][0], quantity=1.5)
        body = _with(p, line_items=[item] * max(1, HUGE_BYTES // len(_bytes(item))))
    else:
        return variant, _bytes("x" * HUGE_BYTES)
    return variant, _bytes(_envelope(shop, body))


def deep_nesting(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variant = rng.choice(("payload_objects", "bare_arrays", "unclosed"))
    if variant == "payload_objects":
        head = _bytes(_envelope(shop, p, payload="@@"))
        nested = b'{"a":' * DEEP + b"1" + b"}" * DEEP
        return variant, head.replace(b'"@@"', nested)
    if variant == "bare_arrays":
        return variant, b"[" * DEEP + b"]" * DEEP
    return variant, b'{"payload":' + b"[" * DEEP


def wrong_types(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    changes: dict[str, dict[str, Any]] = {
        "channel_number": {"channel": 7}, "payload_list": {"payload": [p]},
        "payload_string": {"payload": json.dumps(p)}, "received_at_text": {"received_at": "昨天"},
        "naive_received_at": {"received_at": "2026-11-11T01:00:00"},
        "transport_unknown": {"transport": "carrier-pigeon"}, "native_id_number": {"native_id": 7},
        "schema_version_text": {"schema_version": "one"}, "extra_field": {"priority": "high"},
    }
    variant = rng.choice(sorted(changes))
    if rng.random() < 0.3:
        return "not_an_object", _bytes(rng.choice(([p], "order", 42, True, None)))
    return variant, _bytes(_envelope(shop, p, **changes[variant]))


def big_integers(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variants: dict[str, Payload] = {
        "quantity_1e30": _line(p, quantity=10**30),
        "price_1000_digits": _with(p, total_price="9" * 1000),
        "price_1000_digit_integer": _line(p, price=int("7" * 1000)),
        "id_over_2_64_negative": _with(p, id=-(2**70)),
        "line_discount_1e40": _line(p, discount_allocations=[{"amount": str(10**40)}]),
    }
    variant = rng.choice(sorted(variants))
    return variant, _bytes(_envelope(shop, variants[variant]))


def wrong_channel(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    taobao = {"tid": 3705062400000000001 + rng.randrange(10**6), "status": "WAIT_SELLER_SEND_GOODS",
              "payment": "128.00", "created": "2026-11-11 00:01:02",
              "orders": {"order": [{"outer_sku_id": "TQF-TEE-RED-110", "num": 1,
                                    "price": "128.00"}]}}
    variant = rng.choice(("taobao_in_shopify", "shopify_in_taobao", "shopify_in_jd",
                          "shopify_in_pdd", "shopify_in_douyin", "shopify_in_wechat",
                          "shopify_in_amazon", "unknown_channel"))
    if variant == "taobao_in_shopify":
        return variant, _bytes(_envelope(shop, taobao))
    channel = variant.removeprefix("shopify_in_") if variant != "unknown_channel" else "ebay"
    return variant, _bytes(_envelope(shop, p, channel=channel))


def missing_fields(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    envelope_field = rng.choice(("channel", "shop", "native_id", "received_at", "delivery_id",
                                 "payload", "transport"))
    payload_field = rng.choice(("id", "line_items", "total_price", "created_at", "currency",
                                "financial_status"))
    if rng.random() < 0.5:
        e = _envelope(shop, p)
        e.pop(envelope_field)
        return f"envelope.{envelope_field}", _bytes(e)
    body = _with(p)
    body.pop(payload_field)
    return f"payload.{payload_field}", _bytes(_envelope(shop, body))


def null_values(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variant = rng.choice(("envelope.payload", "envelope.channel", "payload.total_price",
                          "payload.line_items", "line.quantity", "line.price", "literal_null"))
    where, _, name = variant.partition(".")
    if where == "envelope":
        return variant, _bytes(_envelope(shop, p, **{name: None}))
    if where == "payload":
        return variant, _bytes(_envelope(shop, _with(p, **{name: None})))
    if where == "line":
        return variant, _bytes(_envelope(shop, _line(p, **{name: None})))
    return variant, b"null"


def negative_money(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variants = {"total_price": _with(p, total_price="-" + p["total_price"]),
                "line_price": _line(p, price="-59.00"),
                "quantity": _line(p, quantity=-2)}
    variant = rng.choice(sorted(variants))
    return variant, _bytes(_envelope(shop, variants[variant]))


def nan_infinity(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variant = rng.choice(("NaN_string", "Infinity_string", "sNaN_string", "NaN_literal",
                          "Infinity_literal", "float_price"))
    literal = {"NaN_string": '"NaN"', "Infinity_string": '"Infinity"', "sNaN_string": '"sNaN"',
               "NaN_literal": "NaN", "Infinity_literal": "-Infinity", "float_price": "59.000001"}
    head = _bytes(_envelope(shop, _with(p, total_price="@@")))
    return variant, head.replace(b'"@@"', literal[variant].encode())


def control_chars(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    variant = rng.choice(("nul_in_note", "nul_in_sku", "lone_surrogate_in_note",
                          "lone_surrogate_in_shop"))
    escape = "\\u0000" if variant.startswith("nul") else "\\ud800"
    if variant.endswith("note"):
        body = _with(p, note="@@")
    elif variant.endswith("sku"):
        body = _line(p, sku="@@")
    else:
        return variant, _bytes(_envelope("@@", p)).replace(b"@@", escape.encode())
    return variant, _bytes(_envelope(shop, body)).replace(b"@@", escape.encode())


def tombstone(rng: random.Random, shop: str, p: Payload) -> tuple[str, None]:
    return "none", None


def odd_keys(rng: random.Random, shop: str, p: Payload) -> tuple[str, bytes]:
    """Keys that are empty, null, NUL or not UTF-8 (chosen in `poison`), on invalid values."""
    return "empty_value", rng.choice((b"", b" ", b"\n", b"{}"))


CATEGORIES: dict[str, Build] = {
    "truncated_json": truncated_json, "binary": binary, "invalid_utf8": invalid_utf8,
    "gb18030": gb18030, "utf16": utf16, "huge": huge, "deep_nesting": deep_nesting,
    "wrong_types": wrong_types, "big_integers": big_integers, "wrong_channel": wrong_channel,
    "missing_fields": missing_fields, "null_values": null_values,
    "negative_money": negative_money, "control_chars": control_chars,
    "nan_infinity": nan_infinity, "tombstone": tombstone, "odd_keys": odd_keys,
}
ODD_KEYS = (b"", None, b"\x00\x00", b"\xff\xfe\x00k", "键".encode("gb18030"))
SHARE = {"huge": 200, "deep_nesting": 100}
"""Heavy categories are capped at one message in this many (at least one each), so that 10,000
poison messages stay well under a gigabyte on an in-memory broker."""


def poison(n: int, seed: int = 8) -> Iterator[Poison]:
    """n malformed messages, the categories in turn (n >= len(CATEGORIES) covers every one)."""
    rng = random.Random(seed)
    bases = demo_orders(min(n, 200))
    light = [c for c in sorted(CATEGORIES) if c not in SHARE]
    plan = [c for c in sorted(CATEGORIES) for _ in range(max(1, n // SHARE.get(c, n)))
            if c in SHARE]
    plan += [light[i % len(light)] for i in range(max(n - len(plan), 0))]
    for i, category in enumerate(sorted(plan[:n], key=lambda c: rng.random())):
        shop, payload = bases[i % len(bases)]
        variant, value = CATEGORIES[category](rng, shop, payload)
        key = (rng.choice(ODD_KEYS) if category == "odd_keys"
               else f"shopify:{shop}:{payload['id']}".encode())
        yield Poison(category, variant, key, value)
