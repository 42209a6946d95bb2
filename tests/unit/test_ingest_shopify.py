from __future__ import annotations

from typing import Any

import pytest

from ingest.shopify import native_id, unwrap
from schemas.errors import InvalidInput

ORDER = {"id": 820982911946154508, "name": "#9999"}


def test_a_bare_order_unwraps_to_itself() -> None:
    assert unwrap(ORDER) == [ORDER]


def test_the_single_order_wrapper_unwraps_to_its_order() -> None:
    assert unwrap({"order": ORDER}) == [ORDER]


def test_the_orders_list_wrapper_unwraps_to_every_order() -> None:
    other = {"id": 820982911946154509}
    assert unwrap({"orders": [ORDER, other]}) == [ORDER, other]
    assert unwrap({"orders": []}) == []


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ([ORDER], None),
        ("order", None),
        ({"customer": {"id": 1}}, None),
        ({"order": [ORDER]}, "order"),
        ({"orders": ORDER}, "orders"),
        ({"orders": [ORDER, 5]}, "orders[1]"),
        ({"orders": [ORDER, {"name": "#1"}]}, "orders[1]"),
    ],
)
def test_anything_else_is_invalid_input_saying_what_was_expected(
    document: Any, path: str | None
) -> None:
    with pytest.raises(InvalidInput) as caught:
        unwrap(document)
    assert caught.value.path == path
    if path is None:
        assert "{'orders': [...]}" in str(caught.value)


def test_the_native_id_is_the_id_as_an_exact_string() -> None:
    assert native_id(ORDER) == "820982911946154508"
    assert native_id({"id": "820982911946154508"}) == "820982911946154508"


@pytest.mark.parametrize("value", [None, 8.2e17, True, -5, 0, "", "82x", "８２"])
def test_a_missing_or_malformed_id_is_invalid_input(value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        native_id({"id": value})
    assert caught.value.path == "id"
