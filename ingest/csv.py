"""CSV adapter: a merchant's export, one row per order line, grouped into one payload per order.

The native payload of a CSV order is `{"rows": [row, ...]}` with every cell as the file has it;
mapping columns to the canonical order is the csv mapper's job (configured per merchant).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ingest.files import Document, read_csv_rows
from schemas.errors import InvalidInput

ORDER_ID_COLUMN = "order_id"


def read(path: Path) -> Iterator[Document]:
    """One Document per order: the rows sharing an `order_id`, in file order."""
    orders: dict[str, list[Document]] = {}
    for doc in read_csv_rows(path):
        if doc.error is not None:
            yield doc
            continue
        key = (doc.value or {}).get(ORDER_ID_COLUMN) or ""
        if not key.strip():
            yield Document(doc.position, None,
                           f"{doc.position}: column {ORDER_ID_COLUMN!r} is missing or empty",
                           doc.raw)
            continue
        orders.setdefault(key.strip(), []).append(doc)
    for docs in orders.values():
        position = docs[0].position + (f"-{docs[-1].position}" if len(docs) > 1 else "")
        yield Document(position, {"rows": [d.value for d in docs]}, None,
                       b"\n".join(d.raw for d in docs))


def unwrap(document: Any) -> list[Mapping[str, Any]]:
    if not isinstance(document, Mapping) or not isinstance(document.get("rows"), list):
        raise InvalidInput("expected the grouped rows of one CSV order")
    return [document]


def native_id(payload: Mapping[str, Any]) -> str:
    return str(payload["rows"][0][ORDER_ID_COLUMN]).strip()
