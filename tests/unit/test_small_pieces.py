from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dedup.process import classify
from ingest.files import read_documents
from ingest.process import Rejected, envelopes, raw_key
from notify.process import mask
from runtime.runner import Record, _describe, _next_offsets
from runtime.settings import Settings
from schemas.events import RawOrderReceived
from tests.builders import shopify_fixture


def test_the_first_version_is_unique_its_replay_too_another_delivery_a_duplicate(
) -> None:
    assert classify(None, None, "a", "d1") == "unique"
    assert classify("a", "d1", "a", "d1") == "unique"  # the same Kafka message replayed
    assert classify("a", "d1", "a", "d2") == "duplicate"  # the same version delivered again
    assert classify("a", None, "a", "d2") == "unique"  # rows from before deliveries were kept
    assert classify("a", "d1", "b", "d3") == "update"


@given(st.text(min_size=1, max_size=40))
def test_masking_never_reveals_more_than_the_last_four_characters(value: str) -> None:
    masked = mask(value)
    assert len(masked) >= 3
    visible = masked.lstrip("*")
    assert len(visible) <= 4 and value.endswith(visible)
    if len(value) <= 8:
        assert visible == ""


def test_a_plain_postgres_url_is_given_the_psycopg_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERHUB_DATABASE__URL", "postgresql://u@db:5432/hub")
    monkeypatch.setenv("ORDERHUB_KAFKA__BOOTSTRAP", "k1:9092,k2:9092")
    s = Settings()
    assert s.database.url == "postgresql+psycopg://u@db:5432/hub"
    assert s.kafka.bootstrap == "k1:9092,k2:9092"


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Settings().data_dir = Path("/elsewhere")  # type: ignore[misc]


def test_a_validation_error_is_described_by_its_field_path() -> None:
    with pytest.raises(ValidationError) as caught:
        RawOrderReceived.model_validate_json(b'{"channel": "shopify"}')
    assert _describe(caught.value).startswith("shop: Field required (+")


def test_the_next_offset_per_partition_is_one_past_the_highest_seen() -> None:
    records = [Record("t", 0, 5, None, b""), Record("t", 0, 3, None, b""),
               Record("t", 2, 0, None, b"")]
    assert _next_offsets(records) == {("t", 0): 6, ("t", 2): 1}


def test_importing_the_same_file_twice_yields_the_same_delivery_ids(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps([{"order": shopify_fixture()}]))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    first = list(envelopes("shopify", "s", read_documents(path), source="f:abc", received_at=at))
    again = list(envelopes("shopify", "s", read_documents(path), source="f:abc", received_at=at))
    assert [e.delivery_id for e in first] == [e.delivery_id for e in again]  # type: ignore[union-attr]
    assert isinstance(first[0], RawOrderReceived)
    assert raw_key(first[0]) == "shopify:s:820982911946154508"
    assert first[0].payload["id"] == 820982911946154508


def test_a_document_that_is_not_an_order_is_rejected_with_its_text(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text('{"orders": "nope"}\n')
    [rejected] = list(envelopes("shopify", "s", read_documents(path), source="f",
                                received_at=datetime(2026, 1, 1, tzinfo=UTC)))
    assert isinstance(rejected, Rejected)
    assert rejected.original.strip() == b'{"orders": "nope"}'
