"""Checks every channel adapter applies to what it unwraps: one order object, or an array."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.errors import InvalidInput

OrderCheck = Callable[[Any, str], Mapping[str, Any]]


def order_object(value: Any, path: str, *, label: str, id_key: str) -> Mapping[str, Any]:
    """`value` as one order object carrying its id key, else InvalidInput at `path`."""
    if not isinstance(value, Mapping) or id_key not in value:
        raise InvalidInput(f"expected {label} with an '{id_key}'", path=path or None)
    return value


def order_array(value: Any, path: str, check: OrderCheck) -> list[Mapping[str, Any]]:
    """`value` as an array of orders, each passed through the channel's `check`."""
    if not isinstance(value, list):
        raise InvalidInput(f"expected an array of orders, got {type(value).__name__}", path)
    return [check(item, f"{path}[{i}]") for i, item in enumerate(value)]
