"""CSV/Excel adapter: a merchant's export, one row per order line, grouped into one per order.

The native payload of a CSV order is `{"rows": [row, ...]}` with every cell as text, as the file
shows it; which column means what is the merchant's import mapping (`normalize.csv_mapping`),
used here only to find the order id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.files import Document, read_csv_rows, read_xlsx_rows
from normalize.csv_mapping import DEFAULT, CsvMapping
from schemas.errors import InvalidInput

EXCEL_SUFFIXES = (".xlsx", ".xlsm")


def read(path: Path, mapping: CsvMapping = DEFAULT) -> Iterator[Document]:
    """One Document per order: the rows sharing an order id, in file order.

    A row that cannot be read, or has no order id, is rejected alone with its position.
    """
    orders: dict[str, list[Document]] = {}
    column: str | None = None
    for doc in _rows(path, mapping):
        if doc.error is not None:
            yield doc
            continue
        row: dict[str, str] = doc.value or {}
        column = column or mapping.columns.find("order_id", row)
        if column is None:
            yield _no_id_column(doc, mapping)
            return
        key = (row.get(column) or "").strip()
        if not key:
            yield Document(doc.position, None,
                           f"{doc.position}: column {column!r} is missing or empty", doc.raw)
            continue
        orders.setdefault(key, []).append(doc)
    for docs in orders.values():
        position = docs[0].position + (f"-{docs[-1].position}" if len(docs) > 1 else "")
        yield Document(position, {"rows": [d.value for d in docs]}, None,
                       b"\n".join(d.raw for d in docs))


def _rows(path: Path, mapping: CsvMapping) -> Iterator[Document]:
    if path.suffix.lower() in EXCEL_SUFFIXES:
        return read_xlsx_rows(path, sheet=mapping.sheet, id_columns=mapping.columns.order_id)
    return read_csv_rows(path, encoding=mapping.encoding)


def _no_id_column(doc: Document, mapping: CsvMapping) -> Document:
    accepted = ", ".join(mapping.columns.order_id) or "(none configured)"
    return Document("file", None, f"file: no order id column; expected one of {accepted}",
                    doc.raw)


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    if not isinstance(document, Mapping) or not isinstance(document.get("rows"), list):
        raise InvalidInput("expected the grouped rows of one CSV order")
    return [document]


def native_id(payload: Mapping[str, Any], mapping: CsvMapping = DEFAULT) -> str:
    """The order id of grouped rows, from the column the mapping names."""
    first = payload["rows"][0]
    column = mapping.columns.find("order_id", first)
    if column is None:
        raise InvalidInput("no order id column", path="rows[0]")
    return str(first[column]).strip()


@dataclass(frozen=True)
class Adapter:
    """This module bound to one merchant's mapping, for callers that take any channel adapter."""

    mapping: CsvMapping = DEFAULT

    def read(self, path: Path) -> Iterator[Document]:
        return read(path, self.mapping)

    def unwrap(self, document: Any) -> list[Mapping[str, Any]]:
        return unwrap(document)

    def native_id(self, payload: Mapping[str, Any]) -> str:
        return native_id(payload, self.mapping)
