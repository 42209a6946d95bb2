"""A merchant's CSV/Excel order rows, read through their import mapping -> canonical Order."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from normalize.csv_mapping import CsvMapping, MoneyUnit
from normalize.fields import NOT_YET, as_decimal, as_list, as_mapping, build, child, fen
from normalize.fields import optional_text as text_at
from normalize.rates import RateTable
from normalize.regions import full_city, full_province
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import Channel, Order, OrderLine, OrderStatus, Recipient

S = OrderStatus
MAX_QUANTITY = 1_000_000
CHINA = "CN"
COUNTRIES = {"中国": CHINA, "中国大陆": CHINA, "china": CHINA, "prc": CHINA}
PLACEHOLDER_TIMES = (*NOT_YET, "0000-00-00")
SCIENTIFIC = re.compile(r"\d+(\.\d+)?[eE]\+?\d+")
THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
RECIPIENT = ("recipient_name", "recipient_phone", "province", "city", "district", "address",
             "postal_code", "country")


def map_order(
    payload: Mapping[str, Any], *, shop: str, rates: RateTable, mapping: CsvMapping
) -> Order:
    """The canonical Order for one order's rows; any unusable cell raises InvalidInput."""
    rows = _Rows.of(payload, mapping)
    native_id = _native_id(*rows.required("order_id"))
    created_at = _time(*rows.required("created_at"), mapping)
    paid_at = _optional_time(rows.order("paid_at"), mapping)
    native_status, status = _status(rows, paid_at)
    paid_at = None if status == S.PENDING_PAYMENT else paid_at
    currency = _currency(rows)
    lines = tuple(_line(rows, i) for i in range(len(rows.rows)))
    shipping = _order_amount(rows, "shipping")
    discount = abs(_order_amount(rows, "discount"))  # exports show it as 5.00 or as -5.00
    paid = rows.order("paid_amount")
    paid_amount = (sum((line.line_total for line in lines), shipping) - discount if paid is None
                   else _amount(*paid, mapping))
    return build(
        Order,
        id=f"{mapping.id_prefix}{native_id}",
        channel=Channel.CSV,
        shop=shop,
        native_id=native_id,
        native_status=native_status,
        status=status,
        created_at=created_at,
        paid_at=paid_at,
        updated_at=_updated_at(rows, created_at, paid_at),
        currency=currency,
        goods_amount=sum((line.unit_price * line.quantity for line in lines), Decimal(0)),
        shipping_amount=shipping,
        discount_amount=discount,
        paid_amount=paid_amount,
        paid_cny=rates.to_cny(paid_amount, currency, on=(paid_at or created_at).date()),
        lines=lines,
        recipient=_recipient(rows),
        buyer_note=_text(rows.order("buyer_note")),
        flags=_flags(rows),
    )


@dataclass(frozen=True)
class CsvMapper:
    """The csv mapper bound to the merchants' mappings, callable like every channel's mapper."""

    mapping_for: Callable[[str], CsvMapping]

    def __call__(self, payload: Mapping[str, Any], *, shop: str, rates: RateTable) -> Order:
        return map_order(payload, shop=shop, rates=rates, mapping=self.mapping_for(shop))


Cell = tuple[str, str]
"""A cell's text (stripped, not empty) and its path, e.g. `rows[2].数量`."""


@dataclass(frozen=True)
class _Rows:
    """One order's rows, with the file's own header for each field the mapping knows."""

    rows: Sequence[Mapping[str, Any]]
    headers: Mapping[str, str]
    mapping: CsvMapping

    @classmethod
    def of(cls, payload: Mapping[str, Any], mapping: CsvMapping) -> _Rows:
        rows = as_list(as_mapping(payload, "").get("rows"), "rows")
        if not rows:
            raise InvalidInput("an order needs at least one row", path="rows")
        checked = [as_mapping(row, child("rows", i)) for i, row in enumerate(rows)]
        names = [name for name in checked[0] if isinstance(name, str)]
        fields = type(mapping.columns).model_fields
        found = {field: mapping.columns.find(field, names) for field in fields}
        return cls(checked, {f: h for f, h in found.items() if h is not None}, mapping)

    def cell(self, i: int, field: str) -> Cell | None:
        header = self.headers.get(field)
        if header is None:
            return None
        path = child(child("rows", i), header)
        value = text_at(self.rows[i].get(header), path)
        return None if value is None or not value.strip() else (value.strip(), path)

    def order(self, field: str) -> Cell | None:
        """An order-level cell: the first row that fills it; a row saying otherwise is an error.

        Rows after the first often leave order-level cells empty; that is not disagreement.
        """
        cells = [c for c in (self.cell(i, field) for i in range(len(self.rows))) if c]
        for value, path in cells[1:]:
            if value != cells[0][0]:
                raise InvalidInput(f"rows disagree: {cells[0][0]!r} at {cells[0][1]}, "
                                   f"{value!r} here", path=path)
        return cells[0] if cells else None

    def required(self, field: str, i: int | None = None) -> Cell:
        cell = self.order(field) if i is None else self.cell(i, field)
        if cell is not None:
            return cell
        row = child("rows", i or 0)
        header = self.headers.get(field)
        if header is None:
            accepted = ", ".join(getattr(self.mapping.columns, field)) or "none configured"
            raise InvalidInput(f"no column for {field} (accepted: {accepted})", path=row)
        raise InvalidInput("required cell is empty", path=child(row, header))


def _native_id(value: str, path: str) -> str:
    if SCIENTIFIC.fullmatch(value):
        raise InvalidInput(f"{value!r} is an id Excel turned into a rounded number; format the "
                           "column as text and export again", path=path)
    return value


def _time(value: str, path: str, mapping: CsvMapping) -> datetime:
    moment = _parse_time(value, mapping.time_formats)
    if moment is None:
        raise InvalidInput(f"not a time in ISO-8601 or {' / '.join(mapping.time_formats)}: "
                           f"{value!r}", path=path)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=mapping.zone)
    try:
        return moment.astimezone(SHANGHAI)
    except OverflowError as e:
        raise InvalidInput(f"time out of range: {value!r}", path=path) from e


def _parse_time(value: str, formats: Sequence[str]) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    for pattern in formats:
        try:
            return datetime.strptime(value, pattern)
        except ValueError:
            continue
    return None


def _optional_time(cell: Cell | None, mapping: CsvMapping) -> datetime | None:
    if cell is None or cell[0].startswith(PLACEHOLDER_TIMES):
        return None
    return _time(*cell, mapping)


def _updated_at(rows: _Rows, *known: datetime | None) -> datetime:
    updated = _optional_time(rows.order("updated_at"), rows.mapping)
    return updated or max(t for t in known if t is not None)


def _status(rows: _Rows, paid_at: datetime | None) -> tuple[str, OrderStatus]:
    cell = rows.order("status")
    if cell is None:  # an export without statuses: what was paid is to be shipped
        return "", S.PAID if paid_at is not None else S.PENDING_PAYMENT
    value, path = cell
    status = rows.mapping.status_for(value)
    if status is None:
        known = ", ".join(rows.mapping.known_statuses())
        raise InvalidInput(f"unknown status {value!r}; known: {known}", path=path)
    return value, status


def _currency(rows: _Rows) -> str:
    cell = rows.order("currency")
    if cell is None:
        return rows.mapping.currency
    code = cell[0].upper()
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise InvalidInput(f"expected an ISO 4217 code, got {cell[0]!r}", path=cell[1])
    return code


def _amount(value: str, path: str, mapping: CsvMapping) -> Decimal:
    plain = value.removeprefix("¥").removeprefix("￥").removesuffix("元").strip()
    if THOUSANDS.fullmatch(plain):
        plain = plain.replace(",", "")
    if mapping.money_unit == MoneyUnit.FEN and not (plain.isascii() and plain.isdigit()):
        raise InvalidInput(f"expected a whole number of fen, got {value!r}", path=path)
    amount = fen(plain, path) if mapping.money_unit == MoneyUnit.FEN else as_decimal(plain, path)
    if amount < 0:
        raise InvalidInput(f"must not be negative, got {value!r}", path=path)
    return amount


def _order_amount(rows: _Rows, field: str) -> Decimal:
    cell = rows.order(field)
    return Decimal(0) if cell is None else _amount(*cell, rows.mapping)


def _line(rows: _Rows, i: int) -> OrderLine:
    quantity = _quantity(*rows.required("quantity", i))
    unit_price = _amount(*rows.required("unit_price", i), rows.mapping)
    total = rows.cell(i, "line_total")
    return build(
        OrderLine,
        child("rows", i),
        sku=_text(rows.cell(i, "sku")),
        title=_text(rows.cell(i, "title")) or "",
        quantity=quantity,
        unit_price=unit_price,
        line_total=unit_price * quantity if total is None else _amount(*total, rows.mapping),
    )


def _quantity(value: str, path: str) -> int:
    number = as_decimal(value, path)
    if number != number.to_integral_value() or not 0 < number <= MAX_QUANTITY:
        raise InvalidInput(f"expected a whole number from 1 to {MAX_QUANTITY}, got {value!r}",
                           path=path)
    return int(number)


def _text(cell: Cell | None) -> str | None:
    return None if cell is None else cell[0]


def _country(rows: _Rows) -> str:
    cell = rows.order("country")
    if cell is None:
        return rows.mapping.country
    code = COUNTRIES.get(cell[0].casefold(), cell[0])
    return code.upper() if len(code) == 2 and code.isascii() else code


def _recipient(rows: _Rows) -> Recipient | None:
    given = {field: _text(rows.order(field)) for field in RECIPIENT}
    if not any(given.values()):
        return None
    country = _country(rows)
    china = country == CHINA
    # Kept exactly as the merchant exported them, masked or not; only region names are completed.
    return build(
        Recipient,
        name=given["recipient_name"],
        phone=given["recipient_phone"],
        country=country,
        province=full_province(given["province"]) if china else given["province"],
        city=full_city(given["city"]) if china else given["city"],
        district=given["district"],
        address=given["address"],
        postal_code=given["postal_code"],
    )


def _flags(rows: _Rows) -> tuple[str, ...]:
    recipient_given = any(rows.order(field) for field in RECIPIENT)
    return ("cross_border",) if recipient_given and _country(rows) != CHINA else ()
