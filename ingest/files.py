"""Reading a merchant's order file: JSON, JSON array, JSON lines or CSV, one Document per item."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def read_csv_rows(path: Path) -> Iterator[Document]:
    """The rows of a CSV file with a header line, as dicts of strings (UTF-8, BOM allowed).

    A row's position is the line it ends on; a row with too few or too many cells is an error.
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            yield from _csv_rows(reader)
        except (UnicodeDecodeError, csv.Error) as e:
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
