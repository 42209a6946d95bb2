from __future__ import annotations

from pathlib import Path

from ingest import csv as csv_adapter

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
