from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest import csv as csv_adapter
from normalize.csv import CsvMapper, map_order
from normalize.csv_mapping import DEFAULT, CsvColumns, CsvMapping, MoneyUnit
from normalize.process import normalize, with_csv
from normalize.rates import RateTable
from runtime.settings import Settings
from schemas.errors import InvalidInput
from schemas.events import RawOrderReceived
from schemas.order import Channel, Order, OrderStatus
from tests.strategies import json_values

FIXTURES = Path(__file__).parents[1] / "fixtures" / "csv"
RATES = RateTable.from_mapping({"USD": {"2026-01-01": "7.10"}})
GB18030 = CsvMapping(encoding="gb18030")


def orders(name: str, mapping: CsvMapping = DEFAULT) -> dict[str, Order]:
    docs = list(csv_adapter.read(FIXTURES / name, mapping))
    assert [d.error for d in docs if d.error] == []
    mapped = [map_order(d.value, shop="s", rates=RATES, mapping=mapping) for d in docs]
    return {o.native_id: o for o in mapped}


def row(**cells: str) -> dict[str, str]:
    base = {"order_id": "A1", "created_at": "2026-11-11 00:01:02", "sku": "TQF-TEE-RED-110",
            "quantity": "2", "unit_price": "59.00"}
    return {**base, **cells}


def one(*rows: dict[str, Any], mapping: CsvMapping = DEFAULT) -> Order:
    return map_order({"rows": list(rows)}, shop="s", rates=RATES, mapping=mapping)


def refusal(*rows: dict[str, Any], mapping: CsvMapping = DEFAULT) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        one(*rows, mapping=mapping)
    return caught.value


def test_an_english_header_export_maps_lines_amounts_and_regions() -> None:
    order = orders("orders_en.csv")["A1001"]
    assert order.id == "CSVA1001" and order.channel == Channel.CSV and order.shop == "s"
    assert order.status == OrderStatus.PAID and order.native_status == "paid"
    assert [(line.sku, line.quantity, line.line_total) for line in order.lines] == [
        ("TQF-TEE-RED-110", 2, Decimal("118.00")), ("TQF-DRS-PNK-130", 1, Decimal("129.00"))]
    assert (order.goods_amount, order.shipping_amount, order.discount_amount) == (
        Decimal("247.00"), Decimal("10.00"), Decimal("20.00"))
    assert order.paid_amount == order.paid_cny == Decimal("237.00")
    assert order.created_at.isoformat() == "2026-11-11T00:01:02+08:00"
    assert order.recipient is not None
    assert (order.recipient.province, order.recipient.city) == ("浙江省", "杭州市")
    assert (order.recipient.name, order.recipient.phone) == ("张*", "138****0000")
    assert order.buyer_note == "please gift wrap"


def test_aware_times_are_kept_and_a_missing_paid_amount_is_lines_plus_shipping_less_discount(
) -> None:
    order = orders("orders_en.csv")["A1003"]
    assert order.created_at.isoformat() == "2026-11-11T08:05:00+08:00"
    assert order.lines[0].unit_price == Decimal("1019.90")  # "1,019.90" as the export shows it
    assert order.paid_amount == order.lines[0].line_total == Decimal("3059.70")
    assert order.status == OrderStatus.SHIPPED


def test_an_unpaid_order_has_no_paid_time() -> None:
    order = orders("orders_en.csv")["A1002"]
    assert order.status == OrderStatus.PENDING_PAYMENT and order.paid_at is None


def test_a_chinese_export_in_gb18030_maps_with_long_ids_exact_and_blank_follow_up_rows() -> None:
    mapped = orders("orders_zh_gb18030.csv", GB18030)
    order = mapped["612055618715866263"]
    assert order.id == "CSV612055618715866263"
    assert order.status == OrderStatus.PAID and order.native_status == "待发货"
    assert [line.title for line in order.lines] == ["纯棉短袖T恤 红色 110", "公主连衣裙 粉色 130"]
    assert order.paid_amount == Decimal("245.00") and order.shipping_amount == Decimal("8.00")
    assert order.created_at == datetime(2026, 11, 11, 0, 0, 5, tzinfo=UTC)
    assert order.buyer_note == "尽快发货"
    assert mapped["612055618715866264"].status == OrderStatus.PENDING_PAYMENT
    completed = mapped["612055618715866265"]
    assert completed.status == OrderStatus.COMPLETED
    assert completed.recipient is not None
    assert completed.recipient.province == "内蒙古自治区"


def test_rows_that_disagree_on_an_order_level_field_are_refused_naming_row_and_column() -> None:
    error = refusal(row(paid_at="2026-11-11 00:02:00"), row(paid_at="2026-11-11 00:03:00"))
    assert error.path == "rows[1].paid_at"
    assert "rows disagree" in str(error)


def test_a_bad_cell_is_named_by_its_row_and_the_files_own_column() -> None:
    rows = [{"订单号": "A1", "下单时间": "2026-11-11 00:01:02", "单价": "5", "数量": n}
            for n in ("1", "1", "two")]
    error = refusal(*rows)
    assert error.path == "rows[2].数量"


def test_an_unknown_status_is_refused_listing_the_known_ones() -> None:
    error = refusal(row(status="挂起"))
    assert error.path == "rows[0].status"
    assert "'挂起'" in str(error) and "待发货" in str(error) and "pending_payment" in str(error)


def test_a_merchant_status_map_adds_to_the_default_one() -> None:
    mapping = CsvMapping(status_map={"挂起": OrderStatus.REVIEW_HOLD})
    assert one(row(status="挂起"), mapping=mapping).status == OrderStatus.REVIEW_HOLD
    assert one(row(status="已发货"), mapping=mapping).status == OrderStatus.SHIPPED


def test_without_a_status_column_a_paid_order_is_paid_and_an_unpaid_one_pending() -> None:
    assert one(row(paid_at="2026-11-11 00:02:00")).status == OrderStatus.PAID
    assert one(row()).status == OrderStatus.PENDING_PAYMENT


def test_naive_times_are_read_in_the_mappings_zone() -> None:
    order = one(row(created_at="2026/11/11 00:01"), mapping=CsvMapping(time_zone="UTC"))
    assert order.created_at.isoformat() == "2026-11-11T08:01:00+08:00"


def test_a_time_in_no_known_format_is_refused() -> None:
    error = refusal(row(created_at="11/11/2026"))
    assert error.path == "rows[0].created_at" and "ISO-8601" in str(error)


def test_amounts_in_fen_become_yuan_and_a_fraction_of_a_fen_is_refused() -> None:
    order = one(row(unit_price="4990"), mapping=CsvMapping(money_unit=MoneyUnit.FEN))
    assert order.lines[0].unit_price == Decimal("49.90")
    assert refusal(row(unit_price="49.9"), mapping=CsvMapping(money_unit="fen")).path == (
        "rows[0].unit_price")


def test_an_id_that_excel_turned_into_scientific_notation_is_refused() -> None:
    error = refusal(row(order_id="6.12056E+17"))
    assert error.path == "rows[0].order_id" and "format the column as text" in str(error)


def test_a_missing_required_column_is_refused_listing_the_accepted_headers() -> None:
    error = refusal({"order_id": "A1", "created_at": "2026-11-11 00:01:02", "unit_price": "1"})
    assert error.path == "rows[0]" and "数量" in str(error)


def test_the_id_prefix_comes_from_the_mapping_and_foreign_recipients_are_cross_border() -> None:
    order = one(row(country="us", province="CA", city="San Jose"),
                mapping=CsvMapping(id_prefix="SHOPX", currency="usd"))
    assert order.id == "SHOPXA1" and order.currency == "USD"
    assert order.paid_cny == Decimal("837.80")
    assert order.recipient is not None
    assert (order.recipient.country, order.recipient.city) == ("US", "San Jose")
    assert order.flags == ("cross_border",)


def test_one_header_name_may_be_given_as_a_plain_string() -> None:
    assert CsvColumns(order_id="Order No.").order_id == ("Order No.",)


def test_a_merchant_mapping_from_the_environment_maps_its_own_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for line in (FIXTURES / "acme_settings.env").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        monkeypatch.setenv(key, value)
    mapping = Settings().csv.mapping_for("acme-store")
    docs = list(csv_adapter.read(FIXTURES / "acme_orders.csv", mapping))
    mapper = CsvMapper(Settings().csv.mapping_for)
    sent, unpaid = (mapper(d.value, shop="acme-store", rates=RATES) for d in docs)
    assert sent.id == "ACME1077" and sent.status == OrderStatus.SHIPPED
    assert [line.unit_price for line in sent.lines] == [Decimal("49.90"), Decimal("15.00")]
    assert sent.shipping_amount == Decimal("10.00") and sent.paid_amount == Decimal("124.80")
    assert sent.currency == "USD" and sent.paid_cny == Decimal("886.08")
    assert sent.created_at.isoformat() == "2026-11-11T00:00:00+08:00"
    assert sent.recipient is not None and sent.recipient.country == "US"
    assert unpaid.id == "ACME1078" and unpaid.status == OrderStatus.PENDING_PAYMENT
    with pytest.raises(InvalidInput, match="no column for order_id"):
        mapper(docs[0].value, shop="other-shop", rates=RATES)  # the default mapping


def test_csv_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("ORDERHUB_")]:
        monkeypatch.delenv(key)
    acme = CsvMapping(columns=CsvColumns(order_id="Order No."), money_unit=MoneyUnit.FEN,
                      status_map={"Dispatched": OrderStatus.SHIPPED}, encoding="gb18030")
    first = Settings(csv={"mappings": {"acme": acme}, "shops": {"acme-store": "acme"}})
    for key, value in first.to_env().items():
        monkeypatch.setenv(key, value)
    again = Settings()
    assert again.csv == first.csv
    assert again.csv.mapping_for("acme-store") == acme
    assert again.csv.mapping_for("elsewhere") == DEFAULT


def test_a_shop_naming_an_unknown_mapping_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="unknown csv mappings: acme"):
        Settings(csv={"shops": {"acme-store": "acme"}})


def test_a_mapping_with_an_unknown_zone_or_encoding_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        CsvMapping(time_zone="Mars/Olympus")
    with pytest.raises(ValidationError, match="unknown encoding"):
        CsvMapping(encoding="klingon")


def test_normalize_maps_csv_once_the_csv_mapper_is_configured() -> None:
    raw = RawOrderReceived(
        channel="csv", shop="s", native_id="A1", transport="file",
        received_at=datetime(2026, 11, 11, tzinfo=UTC), delivery_id="file:x:line 2:0",
        payload={"rows": [row()]},
    )
    with pytest.raises(InvalidInput, match="no mapper for channel 'csv'"):
        normalize(raw, RATES)
    assert normalize(raw, RATES, with_csv(CsvMapper(lambda shop: DEFAULT))).id == "CSVA1"


HEADERS = ["order_id", "订单号", "created_at", "下单时间", "paid_at", "status", "订单状态",
           "sku", "quantity", "数量", "unit_price", "单价", "line_total", "运费", "优惠",
           "实付金额", "currency", "province", "city", "country", "收货人"]
CELLS = st.sampled_from(["", "A1", "1", "2", "0", "-1", "59.00", "1,019.90", "1e400", "NaN",
                         "2026-11-11 00:01:02", "0001-01-01T00:00:00+14:00", "9999-12-31",
                         "0000-00-00", "paid", "待发货", "USD", "XXX", "浙江", "中国", "¥5"])
REQUIRED = ("order_id", "created_at", "quantity", "unit_price")
PLAUSIBLE = st.fixed_dictionaries(
    {"order_id": st.just("A1") | CELLS, "created_at": st.just("2026-11-11 00:01:02") | CELLS,
     "quantity": st.just("2") | CELLS, "unit_price": st.just("59.00") | CELLS},
    optional={h: CELLS | json_values for h in HEADERS if h not in REQUIRED},
)
ANY_ROW = st.dictionaries(st.sampled_from(HEADERS) | st.text(max_size=6),
                          CELLS | st.text(max_size=12) | json_values, max_size=12)
ROWS = st.lists(PLAUSIBLE | ANY_ROW, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"rows": ROWS}) | json_values,
       st.sampled_from([DEFAULT, CsvMapping(money_unit=MoneyUnit.FEN, time_zone="UTC")]))
def test_any_rows_become_an_order_or_invalid_input(payload: Any, mapping: CsvMapping) -> None:
    try:
        order = map_order(payload, shop="s", rates=RATES, mapping=mapping)
    except InvalidInput:
        return
    assert order.channel == Channel.CSV and len(order.lines) == len(payload["rows"])
