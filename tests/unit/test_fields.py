from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from normalize.fields import (
    beijing_time,
    fen,
    json_number,
    optional_beijing_time,
    optional_unix_time,
    unix_time,
)
from schemas.errors import InvalidInput


def test_a_naive_beijing_string_becomes_an_aware_time_at_plus_eight() -> None:
    assert beijing_time("2025-12-15 10:30:00", "created").isoformat() == "2025-12-15T10:30:00+08:00"


def test_jd_not_yet_dates_and_empty_values_are_none() -> None:
    assert optional_beijing_time("0001-01-01 00:00:00", "p") is None
    assert optional_beijing_time("1970-01-01 08:00:00", "p") is None
    assert optional_beijing_time("", "p") is None


def test_unix_seconds_and_the_same_instant_in_beijing_agree() -> None:
    assert unix_time(1765765800, "t") == beijing_time("2025-12-15 10:30:00", "t")
    assert optional_unix_time(0, "t") is None


def test_fen_becomes_yuan_exactly() -> None:
    assert fen(12990, "p") == Decimal("129.90")
    assert fen("5", "p") == Decimal("0.05")
    with pytest.raises(InvalidInput, match="p"):
        fen(12.5, "p")


@given(st.integers(min_value=0, max_value=10**12))
def test_fen_round_trips(amount: int) -> None:
    assert fen(amount, "p") * 100 == amount


@given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False))
def test_a_json_number_in_yuan_keeps_the_literal_it_was_sent_as(amount: Decimal) -> None:
    assert json_number(float(str(amount)), "p") == Decimal(repr(float(str(amount))))
    assert json_number(float(str(amount)), "p") == amount


def test_garbage_times_name_their_field() -> None:
    with pytest.raises(InvalidInput, match="order.pay_time"):
        beijing_time("15/12/2025", "order.pay_time")
