"""Reading a merchant's order file (JSON, JSON lines, CSV, Excel): one Document per item."""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import zipfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException

EXACT_LIMIT = 2**53
"""Numbers at or above this are not exact as doubles: Excel has already rounded them."""
SCIENTIFIC_FORMAT = re.compile(r"[eE][+-]")
EXCEL_ID_DIGITS = 15
"""Excel keeps 15 significant digits, so a longer id typed as a number has lost its tail."""


@dataclass(frozen=True)
class Document:
    """One item of a file: its value, or why it could not be read (never both).

    `raw` is the item's own text as it stands in the file (UTF-8), for the dead-letter queue.
    """

    position: str
    value: Any | None
    error: str | None = None
    raw: bytes = b""


def read_documents(path: Path) -> Iterator[Document]:
    """The JSON objects in `path`: a single object, an array of them, or one per line (JSONL).

    Whole-file JSON is tried first; JSON lines otherwise, where a bad line is reported as an
    error Document and the good lines are still returned. Integers stay exact (no float).
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield Document("file", None, f"file is not UTF-8: {e}", data)
        return
    if not text.strip():
        return
    try:
        whole = _loads(text)
    except (ValueError, RecursionError) as e:
        yield from _unparsed(text, e)
        return
    if isinstance(whole, list):
        yield from _array_documents(text)
    else:
        yield _object_document("item 1", whole, text)


def _decoder() -> json.JSONDecoder:
    return json.JSONDecoder(parse_constant=_reject_constant)


def _loads(text: str) -> Any:
    return _decoder().decode(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _array_documents(text: str) -> Iterator[Document]:
    # The array is known to be valid JSON: walk it again to keep each element's own text.
    decoder, at = _decoder(), _skip_space(text, text.index("[") + 1)
    number = 0
    while text[at] != "]":
        value, end = decoder.raw_decode(text, at)
        number += 1
        yield _object_document(f"item {number}", value, text[at:end])
        at = _skip_space(text, end)
        at = _skip_space(text, at + 1) if text[at] == "," else at


def _skip_space(text: str, at: int) -> int:
    while text[at] in " \t\r\n":
        at += 1
    return at


def _object_document(position: str, value: Any, source: str) -> Document:
    raw = source.encode()
    if isinstance(value, dict):
        return Document(position, value, None, raw)
    error = f"{position}: expected a JSON object, got {_kind(value)}"
    return Document(position, None, error, raw)


def _unparsed(text: str, error: Exception) -> Iterator[Document]:
    # A broken array or a broken pretty-printed object is one error, not one error per line;
    # JSON lines are recognised by at least one line that is a whole object by itself.
    lines = text.splitlines()
    if text.lstrip().startswith("[") or not any(_is_object_line(line) for line in lines):
        yield Document(_error_position(error), None, _whole_file_error(error), text.encode())
        return
    yield from _json_lines(lines)


def _is_object_line(line: str) -> bool:
    try:
        return isinstance(_loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _error_position(error: Exception) -> str:
    return f"line {error.lineno}" if isinstance(error, json.JSONDecodeError) else "file"


def _whole_file_error(error: Exception) -> str:
    return f"{_error_position(error)}: invalid JSON: {_reason(error)}"


def _json_lines(lines: list[str]) -> Iterator[Document]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield _json_line(f"line {number}", line)


def _json_line(position: str, line: str) -> Document:
    try:
        value = _loads(line)
    except (ValueError, RecursionError) as e:
        return Document(position, None, f"{position}: invalid JSON: {_reason(e)}", line.encode())
    return _object_document(position, value, line)


def _reason(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} (column {error.colno})"
    return str(error)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def read_csv_rows(path: Path, encoding: str = "utf-8-sig") -> Iterator[Document]:
    """The rows of a CSV file with a header line, as dicts of strings.

    The whole file is decoded first, so a file in the wrong encoding is one error rather than
    some rows read and the rest refused; a UTF-8 byte order mark overrides `encoding`.
    A row's position is the line it ends on; a row with too few or too many cells is an error.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig" if data.startswith(codecs.BOM_UTF8) else encoding)
    except UnicodeDecodeError as e:
        error = (f"file: not {encoding} text ({e.reason} at byte {e.start}); set the import "
                 "mapping's encoding (gb18030 for most Chinese exports)")
        yield Document("file", None, error, data)
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        yield from _csv_rows(reader)
    except csv.Error as e:
        line = reader.line_num + 1
        yield Document(f"line {line}", None, f"line {line}: unreadable CSV: {e}", b"")


def _csv_rows(reader: csv.DictReader[str]) -> Iterator[Document]:
    header = reader.fieldnames or ()
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        yield Document("line 1", None, f"line 1: duplicate columns {', '.join(duplicates)}")
        return
    for row in reader:
        yield _csv_row(f"line {reader.line_num}", row, len(header))


def _csv_row(position: str, row: dict[Any, Any], width: int) -> Document:
    cells = [value for key, value in row.items() if key is not None and value is not None]
    cells += row.get(None) or []
    raw = _csv_line(cells)
    if len(cells) != width:
        error = f"{position}: expected {width} fields, got {len(cells)}"
        return Document(position, None, error, raw)
    return Document(position, row, None, raw)


def _csv_line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue().encode()


def read_xlsx_rows(
    path: Path, *, sheet: str | None = None, id_columns: Collection[str] = ()
) -> Iterator[Document]:
    """The rows of a workbook's sheet (the first unless named) under its header row.

    Cells become the text a person sees: dates as ISO-8601, numbers exact (no float artefacts,
    decimals padded as the cell's format shows them). Positions are `row N` as the spreadsheet
    numbers them; empty rows are skipped. A row whose number cannot be exact is rejected alone,
    and so is a number in one of `id_columns` that Excel may have rounded.
    """
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as e:
        yield Document("file", None, f"file: not a readable .xlsx workbook: {e}")
        return
    try:
        if sheet is not None and sheet not in book.sheetnames:
            names = ", ".join(book.sheetnames)
            yield Document("file", None, f"file: no sheet {sheet!r}; the workbook has {names}")
            return
        yield from _sheet_rows(book[sheet] if sheet else book.worksheets[0], id_columns)
    finally:
        book.close()


def _sheet_rows(sheet: Any, id_columns: Collection[str]) -> Iterator[Document]:
    rows = sheet.iter_rows(min_row=1)
    header = _trimmed([_cell_text(cell) for cell in next(rows, ())])
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        yield Document("row 1", None, f"row 1: duplicate columns {', '.join(duplicates)}")
        return
    wanted = {name.strip().casefold() for name in id_columns}
    ids = frozenset(i for i, name in enumerate(header) if name.strip().casefold() in wanted)
    for number, cells in enumerate(rows, start=2):
        texts = _trimmed([_cell_text(cell) for cell in cells])
        if any(texts):
            yield _xlsx_row(f"row {number}", header, cells, texts, ids)


def _xlsx_row(
    position: str, header: list[str], cells: Sequence[Any], texts: list[str],
    ids: frozenset[int],
) -> Document:
    raw = _csv_line(texts)
    if len(texts) > len(header):
        return Document(position, None,
                        f"{position}: expected {len(header)} fields, got {len(texts)}", raw)
    for i, name in enumerate(header[: len(cells)]):
        if _rounded_by_excel(cells[i], i in ids):
            error = (f"{position}: column {name!r} holds {cells[i].value!r} as a number, which "
                     "Excel has already rounded; format the column as text and export again")
            return Document(position, None, error, raw)
    texts += [""] * (len(header) - len(texts))
    return Document(position, dict(zip(header, texts, strict=True)), None, raw)


def _trimmed(texts: list[str]) -> list[str]:
    while texts and not texts[-1]:
        texts.pop()
    return texts


def _rounded_by_excel(cell: Any, is_id: bool) -> bool:
    value = cell.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if abs(value) >= EXACT_LIMIT:
        return True
    scientific = SCIENTIFIC_FORMAT.search(cell.number_format or "") is not None
    return is_id and (scientific or abs(value) >= 10**EXCEL_ID_DIGITS
                      or not float(value).is_integer())


def _cell_text(cell: Any) -> str:
    value, number_format = cell.value, cell.number_format or "General"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return _moment_text(value, number_format)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, int | float):
        return _number_text(value, number_format)
    return str(value)


def _moment_text(value: datetime, number_format: str) -> str:
    shows_time = any(token in number_format.lower() for token in ("h", "s", "am/pm"))
    if not shows_time and value.time() == time(0):
        return value.date().isoformat()
    # Excel stores times as fractions of a day; openpyxl rounds them to the millisecond.
    return value.isoformat(timespec="seconds" if not value.microsecond else "milliseconds")


def _number_text(value: int | float, number_format: str) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        # Excel shows 15 significant digits: 19.9, never the 19.900000000000002 a formula left.
        exact = Decimal(int(value)) if value.is_integer() else Decimal(format(value, ".15g"))
    else:
        exact = Decimal(value)
    places = _decimal_places(number_format)
    if places and exact.as_tuple().exponent > -places:  # type: ignore[operator]  # int here
        exact = exact.quantize(Decimal(1).scaleb(-places))  # pads only: never rounds
    return format(exact, "f")


def _decimal_places(number_format: str) -> int:
    section = number_format.split(";")[0]
    if "%" in section or SCIENTIFIC_FORMAT.search(section):
        return 0
    found = re.search(r"0\.(0+)", section)
    return len(found.group(1)) if found else 0
