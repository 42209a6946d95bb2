from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from normalize.rates import DEFAULT_RATES, RateTable
from schemas.errors import ConfigurationError, InvalidInput

RATES = RateTable.from_mapping(
    {"USD": {"2026-03-01": "7.20", "2026-01-01": "7.10"}, "JPY": {"2026-01-01": Decimal("0.0475")}}
)


def test_the_latest_rate_effective_on_or_before_the_day_is_used() -> None:
    assert RATES.to_cny(Decimal("100"), "USD", on=date(2026, 2, 28)) == Decimal("710.00")
    assert RATES.to_cny(Decimal("100"), "USD", on=date(2026, 3, 1)) == Decimal("720.00")
    assert RATES.to_cny(Decimal("100"), "USD", on=date(2027, 1, 1)) == Decimal("720.00")


def test_conversion_rounds_half_up_to_the_fen() -> None:
    assert RATES.to_cny(Decimal("1.05"), "JPY", on=date(2026, 1, 1)) == Decimal("0.05")
    assert RATES.to_cny(Decimal("0.10"), "JPY", on=date(2026, 1, 1)) == Decimal("0.00")
    assert RATES.to_cny(Decimal("0.01"), "USD", on=date(2026, 1, 1)) == Decimal("0.07")


def test_cny_converts_to_itself_without_a_rate() -> None:
    assert RATES.to_cny(Decimal("12.345"), "CNY", on=date(2000, 1, 1)) == Decimal("12.35")


def test_a_lowercase_currency_code_finds_its_rate() -> None:
    assert RATES.to_cny(Decimal("1"), "usd", on=date(2026, 1, 1)) == Decimal("7.10")


def test_a_currency_without_rates_is_invalid_input_naming_it() -> None:
    with pytest.raises(InvalidInput, match="CHF") as caught:
        RATES.to_cny(Decimal("1"), "CHF", on=date(2026, 1, 1))
    assert caught.value.path == "currency"


def test_a_day_before_the_first_rate_is_invalid_input_naming_the_currency() -> None:
    with pytest.raises(InvalidInput, match="USD on 2025-12-31"):
        RATES.to_cny(Decimal("1"), "USD", on=date(2025, 12, 31))


@pytest.mark.parametrize(
    "rates",
    [
        {"USD": {"2026-13-01": "7.10"}},
        {"USD": {"2026-01-01": "seven"}},
        {"USD": {"2026-01-01": 7.1}},
        {"USD": {"2026-01-01": "0"}},
        {"USD": {"2026-01-01": "-7.10"}},
    ],
)
def test_unusable_configured_rates_are_a_configuration_error(rates: Any) -> None:
    with pytest.raises(ConfigurationError, match="USD"):
        RateTable.from_mapping(rates)


def test_a_table_built_directly_must_be_sorted_by_date() -> None:
    unsorted = (
        (date(2026, 3, 1), Decimal("7.20")),
        (date(2026, 1, 1), Decimal("7.10")),
    )
    with pytest.raises(ConfigurationError, match="sorted"):
        RateTable({"USD": unsorted})


def test_the_default_rates_cover_the_usual_currencies() -> None:
    table = RateTable.from_mapping(DEFAULT_RATES)
    for code in ("USD", "EUR", "GBP", "JPY", "HKD", "SGD", "AUD", "CAD"):
        assert table.to_cny(Decimal("1"), code, on=date(2026, 1, 1)) > 0
