from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest import csv as csv_adapter
from ingest.process import envelopes
from normalize.csv_mapping import CsvColumns, CsvMapping
from runtime.settings import Settings
from schemas.errors import InvalidInput
from schemas.events import RawOrderReceived

EXPORT = (
    "order_id,created_at,sku,quantity,unit_price,province\n"
    "A1001,2026-11-11 00:01:02,TQF-TEE-RED-110,2,59.00,浙江\n"
    "A1002,2026-11-11 00:02:00,TQF-DRS-PNK-130,1,129.00,广东\n"
    "A1001,2026-11-11 00:01:02,TQF-DRS-PNK-130,1,129.00,浙江\n"
    ",2026-11-11 00:03:00,TQF-TEE-RED-110,1,59.00,江苏\n"
)


def test_rows_of_one_order_are_grouped_into_one_payload_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(EXPORT, encoding="utf-8")
    docs = list(csv_adapter.read(path))
    good = [d for d in docs if d.error is None]
    assert [csv_adapter.native_id(d.value) for d in good] == ["A1001", "A1002"]
    assert [r["sku"] for r in good[0].value["rows"]] == ["TQF-TEE-RED-110", "TQF-DRS-PNK-130"]
    assert good[0].position == "line 2-line 4"


def test_a_row_without_an_order_id_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(EXPORT, encoding="utf-8")
    [bad] = [d for d in csv_adapter.read(path) if d.error is not None]
    assert bad.error == "line 5: column 'order_id' is missing or empty"
    assert bad.raw.startswith(b",2026-11-11 00:03:00")


FIXTURES = Path(__file__).parents[1] / "fixtures" / "csv"
ACME = {"columns": {"order_id": "Order No.", "quantity": "Qty", "unit_price": "Price (fen)"},
        "money_unit": "fen"}


def test_a_gb18030_export_is_grouped_by_its_chinese_order_id_column() -> None:
    gb18030 = CsvMapping(encoding="gb18030")
    docs = list(csv_adapter.read(FIXTURES / "orders_zh_gb18030.csv", gb18030))
    assert [d.error for d in docs] == [None, None, None]
    assert [d.position for d in docs] == ["line 2-line 3", "line 4", "line 5"]
    first = docs[0].value
    assert [r["商品名称"] for r in first["rows"]] == ["纯棉短袖T恤 红色 110", "公主连衣裙 粉色 130"]
    assert first["rows"][1]["收货人"] == ""  # cells stay as the file has them
    assert csv_adapter.native_id(first) == "612055618715866263"
    assert "纯棉短袖T恤".encode() in docs[0].raw


def test_a_gb18030_file_read_as_utf8_is_one_error_that_says_which_encoding_to_set() -> None:
    docs = list(csv_adapter.read(FIXTURES / "orders_zh_gb18030.csv"))
    [doc] = docs
    assert doc.position == "file" and doc.value is None
    assert doc.error is not None
    assert "not utf-8-sig text" in doc.error and "gb18030" in doc.error


def test_a_utf8_byte_order_mark_wins_over_the_configured_encoding(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("订单号,数量\nB1,1\n", encoding="utf-8-sig")
    [doc] = list(csv_adapter.read(path, CsvMapping(encoding="gb18030")))
    assert doc.value == {"rows": [{"订单号": "B1", "数量": "1"}]}


def test_a_bad_row_is_rejected_alone_and_the_rest_of_its_order_still_groups(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("订单号,商家编码,数量\nB1,TEE,1\nB2,DRS\nB1,SCK,2\n", encoding="utf-8")
    docs = list(csv_adapter.read(path))
    assert [(d.position, d.error) for d in docs] == [
        ("line 3", "line 3: expected 3 fields, got 2"), ("line 2-line 4", None)]
    assert docs[0].raw == b"B2,DRS"
    assert [r["商家编码"] for r in docs[1].value["rows"]] == ["TEE", "SCK"]


def test_rows_are_grouped_by_the_column_the_merchant_mapping_names(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Order No.,order_id,Qty\n77,x,1\n77,y,2\n78,x,1\n", encoding="utf-8")
    mapping = CsvMapping(columns=CsvColumns(order_id="Order No."))
    docs = list(csv_adapter.read(path, mapping))
    assert [csv_adapter.native_id(d.value, mapping) for d in docs] == ["77", "78"]
    assert [len(d.value["rows"]) for d in docs] == [2, 1]


def test_a_file_without_an_order_id_column_is_one_error_listing_the_accepted_headers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "export.csv"
    path.write_text("sku,quantity\nTEE,1\nDRS,2\n", encoding="utf-8")
    [doc] = list(csv_adapter.read(path))
    assert doc.error == ("file: no order id column; "
                         "expected one of order_id, 订单号, 订单编号, 主订单编号")


def test_envelopes_carry_the_order_id_of_a_chinese_header_export() -> None:
    docs = csv_adapter.read(FIXTURES / "orders_zh_gb18030.csv", CsvMapping(encoding="gb18030"))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    found = list(envelopes("csv", "s", docs, source="f", received_at=at))
    assert [e.native_id for e in found if isinstance(e, RawOrderReceived)] == [
        "612055618715866263", "612055618715866264", "612055618715866265"]


def test_a_bound_adapter_finds_the_order_id_in_the_merchants_own_column() -> None:
    mapping = Settings(csv={"mappings": {"acme": ACME}}).csv.mappings["acme"]
    adapter = csv_adapter.Adapter(mapping)
    docs = list(adapter.read(FIXTURES / "acme_orders.csv"))
    ids = [adapter.native_id(p) for d in docs for p in adapter.unwrap(d.value)]
    assert ids == ["1077", "1078"]
    with pytest.raises(InvalidInput, match="no order id column"):
        csv_adapter.native_id(docs[0].value)
