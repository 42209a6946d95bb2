from __future__ import annotations

from typing import Any

from allocate.process import needed_units
from normalize.process import normalize
from normalize.rates import DEFAULT_RATES, RateTable
from tests.builders import raw, shopify_fixture

RATES = RateTable.from_mapping(DEFAULT_RATES)


def _order(**changes: Any) -> Any:
    return normalize(raw(shopify_fixture(**changes)), RATES)


def test_units_are_summed_per_merchant_sku() -> None:
    assert needed_units(_order()) == {"IPOD2008PINK": 1, "IPOD2008BLACK": 2}
