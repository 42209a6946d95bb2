from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.files import Document, read_csv_rows, read_documents
from ingest.shopify import unwrap

BIG = 612055618715866263
FIXTURE = Path(__file__).parents[1] / "fixtures" / "shopify" / "orders_create.json"


def write(tmp_path: Path, text: str, name: str = "orders.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read(tmp_path: Path, text: str) -> list[Document]:
    return list(read_documents(write(tmp_path, text)))


def test_a_single_object_is_one_document(tmp_path: Path) -> None:
    docs = read(tmp_path, '{\n  "id": 1,\n  "name": "#1001"\n}\n')
    assert docs == [Document("item 1", {"id": 1, "name": "#1001"}, None, docs[0].raw)]
    assert json.loads(docs[0].raw) == {"id": 1, "name": "#1001"}


def test_an_array_gives_one_document_per_element_with_its_own_text(tmp_path: Path) -> None:
    docs = read(tmp_path, '[ {"id": 1},\n  {"id": 2, "note": "a, [b]"} ]')
    assert [d.position for d in docs] == ["item 1", "item 2"]
    assert [d.value for d in docs] == [{"id": 1}, {"id": 2, "note": "a, [b]"}]
    assert [d.raw for d in docs] == [b'{"id": 1}', b'{"id": 2, "note": "a, [b]"}']


def test_an_empty_array_or_file_gives_no_documents(tmp_path: Path) -> None:
    assert read(tmp_path, "[ ]") == []
    assert read(tmp_path, "\n  \n") == []


def test_an_array_element_that_is_not_an_object_is_an_error(tmp_path: Path) -> None:
    docs = read(tmp_path, '[{"id": 1}, 5]')
    assert docs[0].value == {"id": 1}
    assert docs[1].value is None
    assert docs[1].error == "item 2: expected a JSON object, got a number"


def test_json_lines_with_one_bad_line_still_return_the_others(tmp_path: Path) -> None:
    docs = read(tmp_path, '{"id": 1}\n{"id": 2,\n\n{"id": 3}\n')
    assert [d.position for d in docs] == ["line 1", "line 2", "line 4"]
    assert [d.value for d in docs] == [{"id": 1}, None, {"id": 3}]
    bad = docs[1]
    assert bad.error is not None and bad.error.startswith("line 2: invalid JSON: ")
    assert bad.raw == b'{"id": 2,'
    assert docs[0].error is None and docs[2].error is None


@pytest.mark.parametrize(
    "text",
    [f'{{"tid": {BIG}}}', f'[{{"tid": {BIG}}}]', f'{{"tid": {BIG}}}\n{{"tid": {BIG + 1}}}'],
)
def test_a_big_integer_id_survives_exactly(tmp_path: Path, text: str) -> None:
    value = read(tmp_path, text)[0].value
    assert isinstance(value, dict)
    tid = value["tid"]
    assert type(tid) is int
    assert tid == BIG
    assert str(tid) == "612055618715866263"


def test_a_broken_pretty_printed_document_is_one_error_not_one_per_line(tmp_path: Path) -> None:
    docs = read(tmp_path, '{\n  "id": 1,\n  "name": "#1001"\n  "note": null\n}\n')
    assert len(docs) == 1
    assert docs[0].position == "line 4"
    assert docs[0].error is not None and docs[0].error.startswith("line 4: invalid JSON: ")


def test_a_broken_array_is_one_error(tmp_path: Path) -> None:
    docs = read(tmp_path, '[\n{"id": 1},\n{"id": 2}\n{"id": 3}\n]')
    assert len(docs) == 1
    assert docs[0].value is None and docs[0].error is not None


def test_nan_is_not_accepted_as_json(tmp_path: Path) -> None:
    docs = read(tmp_path, '{"id": 1}\n{"total": NaN}\n')
    assert docs[1].error is not None and "NaN" in docs[1].error


def test_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"id": 7}')
    assert [d.value for d in read_documents(path)] == [{"id": 7}]


def test_a_file_that_is_not_utf8_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "gbk.json"
    path.write_bytes('{"note": "请尽快发货"}'.encode("gbk"))
    docs = list(read_documents(path))
    assert len(docs) == 1 and docs[0].error is not None and "UTF-8" in docs[0].error


def test_the_shopify_fixture_reads_and_unwraps_to_one_order(tmp_path: Path) -> None:
    [doc] = list(read_documents(FIXTURE))
    [order] = unwrap(doc.value)
    assert order["id"] == 820982911946154508


def test_a_rest_orders_wrapper_in_a_file_unwraps_to_each_order(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"orders": [{"id": BIG}, {"id": BIG + 1}]}))
    [doc] = list(read_documents(path))
    assert [o["id"] for o in unwrap(doc.value)] == [BIG, BIG + 1]


def test_csv_rows_are_dicts_positioned_by_line(tmp_path: Path) -> None:
    text = '\ufefforder_id,sku,qty\n612055618715866263,TQF-TEE-RED-110,2\n\nA2,"TQF, SCK",1\n'
    rows = list(read_csv_rows(write(tmp_path, text, "orders.csv")))
    assert [r.position for r in rows] == ["line 2", "line 4"]
    assert rows[0].value == {"order_id": "612055618715866263", "sku": "TQF-TEE-RED-110", "qty": "2"}
    assert rows[1].value == {"order_id": "A2", "sku": "TQF, SCK", "qty": "1"}
    assert rows[1].raw == b'A2,"TQF, SCK",1'


def test_a_csv_row_with_the_wrong_number_of_cells_is_an_error(tmp_path: Path) -> None:
    text = "order_id,sku,qty\nA1,TQF-TEE-RED-110\nA2,TQF-TEE-RED-120,1,extra\nA3,TQF-SCK-MIX-3P,1\n"
    rows = list(read_csv_rows(write(tmp_path, text, "orders.csv")))
    assert [r.error for r in rows] == [
        "line 2: expected 3 fields, got 2",
        "line 3: expected 3 fields, got 4",
        None,
    ]
    assert rows[2].value == {"order_id": "A3", "sku": "TQF-SCK-MIX-3P", "qty": "1"}


def test_a_csv_with_duplicate_columns_is_refused(tmp_path: Path) -> None:
    rows = list(read_csv_rows(write(tmp_path, "sku,qty,sku\na,1,b\n", "orders.csv")))
    assert len(rows) == 1
    assert rows[0].error == "line 1: duplicate columns sku"


def test_absurdly_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    docs = read(tmp_path, '{"id": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    assert docs[0].value == {"id": 1}
    assert docs[1].error is not None and docs[1].error.startswith("line 2: invalid JSON")
