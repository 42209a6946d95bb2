from __future__ import annotations

from typing import Any

from allocate.process import Allocation, WarehouseStock, allocate, needed_units
from normalize.process import normalize
from normalize.rates import DEFAULT_RATES, RateTable
from schemas.events import Hold
from tests.builders import raw, shopify_fixture

RATES = RateTable.from_mapping(DEFAULT_RATES)


def _order(**changes: Any) -> Any:
    return normalize(raw(shopify_fixture(**changes)), RATES)


def test_units_are_summed_per_merchant_sku() -> None:
    assert needed_units(_order()) == {"IPOD2008PINK": 1, "IPOD2008BLACK": 2}


def test_the_first_warehouse_by_priority_that_has_everything_ships_the_order() -> None:
    decision = allocate(_order(), [
        WarehouseStock("WH-A", {"IPOD2008PINK": 9, "IPOD2008BLACK": 1}),
        WarehouseStock("WH-B", {"IPOD2008PINK": 1, "IPOD2008BLACK": 2}),
    ])
    assert isinstance(decision, Allocation)
    assert decision.warehouse == "WH-B"
    assert [(ln.sku, ln.quantity) for ln in decision.lines] == [
        ("IPOD2008PINK", 1), ("IPOD2008BLACK", 2)]


def test_running_out_of_stock_is_a_hold_naming_the_short_skus() -> None:
    decision = allocate(_order(), [WarehouseStock("WH-A", {"IPOD2008PINK": 5})])
    assert decision == Hold(reason="out_of_stock",
                            details={"IPOD2008BLACK": "need 2, most in one warehouse 0"})


def test_no_warehouse_is_a_hold_not_an_error() -> None:
    assert isinstance(allocate(_order(), []), Hold)
    assert allocate(_order(), []).reason == "no_warehouse"  # type: ignore[union-attr]


def test_a_line_without_a_merchant_sku_cannot_be_allocated() -> None:
    payload = shopify_fixture()
    payload["line_items"][1]["sku"] = ""
    decision = allocate(normalize(raw(payload), RATES), [WarehouseStock("WH-A", {})])
    assert decision == Hold(reason="unknown_sku", details={"lines": "2"})
