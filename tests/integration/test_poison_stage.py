from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import Engine, text

from runtime.runner import ORIGINAL_ON_TOPIC
from runtime.settings import Settings
from schemas.events import DeadLetter
from schemas.topics import DLQ, RAW
from tests.builders import raw, shopify_fixture
from tests.stagekit import KafkaIO, run_stage


def _normalize(settings: Settings, key: str, value: bytes) -> KafkaIO:
    io = KafkaIO(settings)
    io.produce(RAW, [(key, value)])
    run_stage("normalize", settings, io, io.read(RAW, expect=1))
    return io


def _letters(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT key, message, original FROM dead_letters")).mappings()
        return [dict(r) for r in rows]


def _orders(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM orders")).scalar_one())


def test_a_nul_byte_in_the_key_is_dead_lettered_instead_of_halting_the_worker(
    settings: Settings, engine: Engine
) -> None:
    _normalize(settings, "\x00bad\x00", b"not json")
    [letter] = _letters(engine)
    assert letter["key"] == "\ufffdbad\ufffd"
    assert letter["message"].startswith("value: Invalid JSON")


def test_a_nul_character_in_an_order_field_is_dead_lettered_with_the_reason(
    settings: Settings, engine: Engine
) -> None:
    value = raw(shopify_fixture(note="@@")).model_dump_json().encode().replace(b"@@", b"\\u0000")
    _normalize(settings, "shopify:s:1", value)
    [letter] = _letters(engine)
    assert "U+0000" in letter["message"]
    assert _orders(engine) == 0


def test_an_escaped_backslash_before_u0000_is_ordinary_text(
    settings: Settings, engine: Engine
) -> None:
    _normalize(settings, "shopify:s:1", raw(shopify_fixture(note="C:\\u0000")).model_dump_json()
               .encode())
    assert _letters(engine) == []
    assert _orders(engine) == 1


def test_a_negative_total_is_dead_lettered_not_projected(
    settings: Settings, engine: Engine
) -> None:
    _normalize(settings, "shopify:s:1",
               raw(shopify_fixture(total_price="-267.58")).model_dump_json().encode())
    [letter] = _letters(engine)
    assert letter["message"] == "paid_amount: negative amount -267.58"
    assert _orders(engine) == 0


def test_a_message_near_the_size_limit_dead_letters_into_a_dlq_message_under_it(
    settings: Settings, engine: Engine
) -> None:
    value = json.dumps({"junk": "x" * 900_000}).encode()
    io = _normalize(settings, "shopify:s:1", value)
    [letter] = _letters(engine)
    [out] = io.read(DLQ, expect=1)
    dead = DeadLetter.model_validate_json(out.value or b"")
    assert bytes(letter["original"]) == value
    assert len(out.value or b"") < 1_000_000
    assert base64.b64decode(dead.original) == value[:ORIGINAL_ON_TOPIC]
    assert f"of {len(value)} bytes" in dead.message
