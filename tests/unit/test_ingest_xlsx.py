from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl

from ingest import csv as csv_adapter
from ingest.files import Document, read_xlsx_rows
from normalize.csv import map_order
from normalize.csv_mapping import DEFAULT, CsvMapping
from normalize.rates import RateTable
from schemas.order import OrderStatus

HEADER = ["订单号", "下单时间", "订单状态", "商家编码", "数量", "单价", "小计", "商品ID",
          "发货日期"]
PLACED = datetime(2026, 11, 11, 8, 0, 5)
SHIPPED = datetime(2026, 11, 12)


def workbook(tmp_path: Path, rows: list[list[Any]], formats: dict[str, str] | None = None) -> Path:
    """A workbook as Excel would save it: real dates, numbers as numbers, given cell formats."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "订单"
    for values in [HEADER, *rows]:
        sheet.append(values)
    for cell, number_format in (formats or {}).items():
        sheet[cell].number_format = number_format
    other = book.create_sheet("退货")
    other.append(["订单号", "数量"])
    other.append(["R1", 1])
    path = tmp_path / "export.xlsx"
    book.save(path)
    return path


ROWS: list[list[Any]] = [
    ["612055618715866263", PLACED, "待发货", "TQF-TEE-RED-110", 2, 19.9, 39.800000000000004,
     "1001", SHIPPED],
    ["612055618715866263", PLACED, "待发货", "TQF-DRS-PNK-130", 1, 59, 59, "1002", None],
    [612055618715866264, PLACED, "待发货", "TQF-SCK-MIX-3P", 1, 9.9, 9.9, "1003", None],
    [],
    [249786309732, PLACED, "已发货", "TQF-SCK-MIX-3P", 1, 9.9, 9.9, 2**60, None],
    [6.12055618715866e17, PLACED, "已发货", "TQF-SCK-MIX-3P", 1, 9.9, 9.9, "1004", None],
    [249786309733, PLACED, "已发货", "TQF-SCK-MIX-3P", 1, 9.9, 9.9, "1005", None],
]
FORMATS = {"B2": "yyyy-mm-dd hh:mm:ss", "I2": "yyyy-mm-dd", "F3": "0.00", "A7": "0.00E+00"}


def docs(tmp_path: Path, mapping: CsvMapping = DEFAULT) -> list[Document]:
    return list(csv_adapter.read(workbook(tmp_path, ROWS, FORMATS), mapping))


def test_cells_are_read_as_the_text_a_person_sees(tmp_path: Path) -> None:
    rows = [d.value for d in read_xlsx_rows(workbook(tmp_path, ROWS[:2], FORMATS))]
    assert rows[0] == {"订单号": "612055618715866263", "下单时间": "2026-11-11T08:00:05",
                       "订单状态": "待发货", "商家编码": "TQF-TEE-RED-110", "数量": "2",
                       "单价": "19.9", "小计": "39.8", "商品ID": "1001", "发货日期": "2026-11-12"}
    assert (rows[1]["单价"], rows[1]["小计"], rows[1]["发货日期"]) == ("59.00", "59", "")


def test_rows_are_grouped_by_order_and_positioned_as_the_spreadsheet_numbers_them(
    tmp_path: Path,
) -> None:
    good = [d for d in docs(tmp_path) if d.error is None]
    assert [d.position for d in good] == ["row 2-row 3", "row 8"]
    assert [csv_adapter.native_id(d.value) for d in good] == ["612055618715866263",
                                                              "249786309733"]


def test_numbers_excel_has_already_rounded_reject_their_row_alone(tmp_path: Path) -> None:
    bad = {d.position: d.error for d in docs(tmp_path) if d.error is not None}
    assert set(bad) == {"row 4", "row 6", "row 7"}  # the empty row 5 is skipped
    assert bad["row 4"] == ("row 4: column '订单号' holds 6.120556187158662e+17 as a number, "
                            "which Excel has already rounded; format the column as text and "
                            "export again")
    assert "column '商品ID' holds 1.152921504606847e+18" in (bad["row 6"] or "")
    assert "column '订单号' holds 6.12055618715866e+17" in (bad["row 7"] or "")


def test_a_rejected_row_keeps_its_cells_as_text_for_the_dead_letter_queue(
    tmp_path: Path,
) -> None:
    [row4] = [d for d in docs(tmp_path) if d.position == "row 4"]
    assert row4.raw.endswith(",2026-11-11T08:00:05,待发货,TQF-SCK-MIX-3P,1,9.9,9.9,1003".encode())


def test_an_order_from_a_workbook_maps_with_exact_prices_and_beijing_times(
    tmp_path: Path,
) -> None:
    first = next(d for d in docs(tmp_path) if d.error is None)
    rates = RateTable.from_mapping({})
    order = map_order(first.value, shop="s", rates=rates, mapping=DEFAULT)
    assert order.id == "CSV612055618715866263" and order.status == OrderStatus.PAID
    assert [line.unit_price for line in order.lines] == [Decimal("19.9"), Decimal("59.00")]
    assert [line.line_total for line in order.lines] == [Decimal("39.8"), Decimal("59")]
    assert order.paid_amount == Decimal("98.8")
    assert order.created_at.isoformat() == "2026-11-11T08:00:05+08:00"


def test_the_mapping_can_name_another_sheet(tmp_path: Path) -> None:
    [doc] = docs(tmp_path, CsvMapping(sheet="退货"))
    assert doc.value == {"rows": [{"订单号": "R1", "数量": "1"}]}
    [missing] = docs(tmp_path, CsvMapping(sheet="Sheet9"))
    assert missing.error == "file: no sheet 'Sheet9'; the workbook has 订单, 退货"


def test_a_file_that_is_not_a_workbook_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "export.xlsx"
    path.write_bytes(b"order_id,sku\nA1,TEE\n")
    [doc] = list(csv_adapter.read(path))
    assert doc.position == "file" and doc.value is None
    assert (doc.error or "").startswith("file: not a readable .xlsx workbook")


def test_a_row_longer_than_the_header_and_duplicate_headers_are_refused(tmp_path: Path) -> None:
    long_row = ["A1", PLACED, "待发货", "TEE", 1, 5, 5, "1", None, "extra"]
    [doc] = list(read_xlsx_rows(workbook(tmp_path, [long_row])))
    assert doc.error == "row 2: expected 9 fields, got 10"
    book = openpyxl.Workbook()
    book.active.append(["sku", "数量", "sku"])
    book.save(tmp_path / "dup.xlsx")
    [dup] = list(read_xlsx_rows(tmp_path / "dup.xlsx"))
    assert dup.error == "row 1: duplicate columns sku"
