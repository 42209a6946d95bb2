"""Typed readers for native payload fields; every failure is an InvalidInput naming the field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.base import SHANGHAI
from schemas.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)
MAX_DIGITS = 13
"""Amounts have fewer integer digits than this; more is garbage, and would overflow arithmetic."""


def child(path: str, key: str | int) -> str:
    """The path of `key` inside `path`: `a.b`, `a[3]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def required(obj: Mapping[str, Any], key: str, path: str = "") -> Any:
    """`obj[key]`, which must be present and not null."""
    value = obj.get(key)
    if value is None:
        raise InvalidInput("required field is missing or null", path=child(path, key))
    return value


def as_mapping(value: Any, path: str) -> Mapping[str, Any]:
    """`value` as a JSON object."""
    if not isinstance(value, Mapping):
        raise InvalidInput(f"expected an object, got {type(value).__name__}", path=path or None)
    return value


def as_list(value: Any, path: str) -> Sequence[Any]:
    """`value` as a JSON array."""
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"expected an array, got {type(value).__name__}", path=path)
    return value


def amount_at(value: Any, path: str, key: str) -> Decimal:
    """The decimal `value[key]` of an object such as `{"amount": "9.90"}`."""
    return as_decimal(required(as_mapping(value, path), key, path), child(path, key))


def as_text(value: Any, path: str) -> str:
    """`value` as a string."""
    if not isinstance(value, str):
        raise InvalidInput(f"expected a string, got {type(value).__name__}", path=path)
    return value


def optional_text(value: Any, path: str) -> str | None:
    """`value` as a string, or None when it is null or empty."""
    if value is None:
        return None
    return as_text(value, path) or None


def as_int(value: Any, path: str) -> int:
    """`value` as an integer; a JSON float or a bool is refused, never truncated."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"expected an integer, got {type(value).__name__}", path=path)
    return value


def id_text(value: Any, path: str) -> str:
    """An id sent as an integer or a digit string, as a string (never through float)."""
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    raise InvalidInput(f"expected an integer id, got {value!r}", path=path)


def as_decimal(value: Any, path: str) -> Decimal:
    """A decimal string (or integer) as a finite Decimal; a float is refused as inexact."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"expected a decimal string, got {type(value).__name__}", path=path)
    try:
        amount = Decimal(value)
    except InvalidOperation as e:
        raise InvalidInput(f"not a decimal number: {value!r}", path=path) from e
    if not amount.is_finite() or amount.adjusted() >= MAX_DIGITS:
        raise InvalidInput(f"not a plausible amount: {value!r}", path=path)
    return amount


def iso_time(value: Any, path: str) -> datetime:
    """An ISO-8601 time with an offset or `Z`; a naive time is refused."""
    text = as_text(value, path)
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError as e:
        raise InvalidInput(f"not an ISO-8601 time: {text!r}", path=path) from e
    if parsed.utcoffset() is None:
        raise InvalidInput(f"time has no offset: {text!r}", path=path)
    try:
        parsed.astimezone(UTC)
    except OverflowError as e:
        raise InvalidInput(f"time out of range: {text!r}", path=path) from e
    return parsed


def json_number(value: Any, path: str) -> Decimal:
    """A JSON number or decimal string in major units (PDD sends yuan as JSON numbers).

    A float is read through its shortest repr, which is the literal the JSON carried.
    """
    if isinstance(value, float):
        return as_decimal(repr(value), path)
    return as_decimal(value, path)


def fen(value: Any, path: str) -> Decimal:
    """An integer amount in fen (Douyin, WeChat, PDD push) as yuan, exactly."""
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit() \
            and len(value) <= 20:
        value = int(value)
    return as_decimal(as_int(value, path), path).scaleb(-2)


NOT_YET = ("0001-01-01", "1970-01-01")
"""Dates some channels (JD) send for "not yet" instead of null."""


def beijing_time(value: Any, path: str) -> datetime:
    """A naive `yyyy-MM-dd HH:mm:ss` string in Beijing time (Taobao, JD, PDD), made aware."""
    text = as_text(value, path).strip()
    try:
        parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError as e:
        raise InvalidInput(f"expected yyyy-MM-dd HH:mm:ss, got {text!r}", path=path) from e
    return parsed.replace(tzinfo=SHANGHAI)


def optional_beijing_time(value: Any, path: str) -> datetime | None:
    """Like `beijing_time`, but null, empty and the "not yet" dates are None."""
    if value is None or (isinstance(value, str) and (not value.strip()
                                                     or value.startswith(NOT_YET))):
        return None
    return beijing_time(value, path)


def unix_time(value: Any, path: str) -> datetime:
    """Unix seconds (Douyin, WeChat) as an aware Beijing time."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    seconds = as_int(value, path)
    if not 0 < seconds < 32503680000:  # before year 3000
        raise InvalidInput(f"not a plausible Unix time: {seconds}", path=path)
    return datetime.fromtimestamp(seconds, SHANGHAI)


def optional_unix_time(value: Any, path: str) -> datetime | None:
    """Like `unix_time`, but null and 0 (the channels' "not yet") are None."""
    if value is None or value in (0, "0", ""):
        return None
    return unix_time(value, path)


def build(model: type[M], path: str = "", **fields: Any) -> M:
    """`model(**fields)`, with a contract violation reported as InvalidInput at its field."""
    try:
        return model(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidInput(first["msg"], path=loc_path(first["loc"], path) or None) from e


def loc_path(loc: Sequence[str | int], path: str = "") -> str:
    """A pydantic error location as a field path: ("lines", 0, "sku") -> `lines[0].sku`."""
    for key in loc:
        path = child(path, key)
    return path
