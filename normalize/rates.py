"""Dated currency rates that turn an order's amount into CNY."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from schemas.errors import ConfigurationError, InvalidInput

CNY = "CNY"
CENT = Decimal("0.01")

RateHistory = tuple[tuple[date, Decimal], ...]
"""(effective date, CNY per one unit of the currency), oldest first."""

# Example defaults so a fresh install can price foreign orders at all. They are NOT live rates:
# a merchant must configure their own (settings carry them), or the approval threshold in CNY
# drifts away from what their bank actually pays.
DEFAULT_RATES: dict[str, dict[str, str]] = {
    "USD": {"2026-01-01": "7.10"},
    "EUR": {"2026-01-01": "7.75"},
    "GBP": {"2026-01-01": "9.05"},
    "JPY": {"2026-01-01": "0.0475"},
    "HKD": {"2026-01-01": "0.912"},
    "SGD": {"2026-01-01": "5.35"},
    "AUD": {"2026-01-01": "4.65"},
    "CAD": {"2026-01-01": "5.10"},
}


@dataclass(frozen=True)
class RateTable:
    """CNY conversion rates per currency, each effective from its date until the next one."""

    rates: Mapping[str, RateHistory]

    def __post_init__(self) -> None:
        for currency, history in self.rates.items():
            _check_history(currency, history)

    def to_cny(self, amount: Decimal, currency: str, on: date) -> Decimal:
        """`amount` in CNY at the latest rate effective on or before `on`, to the fen."""
        code = currency.upper()
        rate = Decimal(1) if code == CNY else self._rate(code, on)
        return (amount * rate).quantize(CENT, rounding=ROUND_HALF_UP)

    def _rate(self, currency: str, on: date) -> Decimal:
        history = self.rates.get(currency, ())
        index = bisect.bisect_right([effective for effective, _ in history], on)
        if index == 0:
            raise InvalidInput(f"no CNY rate for {currency} on {on.isoformat()}", path="currency")
        return history[index - 1][1]

    @classmethod
    def from_mapping(cls, m: Mapping[str, Mapping[str, str | Decimal]]) -> RateTable:
        """Build from {"USD": {"2026-01-01": "7.10"}, ...} as settings carry it."""
        return cls({code.upper(): _parse_history(code, dated) for code, dated in m.items()})


def _parse_history(currency: str, dated: Mapping[str, str | Decimal]) -> RateHistory:
    return tuple(sorted(_parse_rate(currency, day, rate) for day, rate in dated.items()))


def _parse_rate(currency: str, day: str, rate: str | Decimal) -> tuple[date, Decimal]:
    try:
        effective = date.fromisoformat(day)
        if not isinstance(rate, str | Decimal):  # a float rate would already be inexact
            raise TypeError(type(rate).__name__)
        value = Decimal(rate)
    except (TypeError, ValueError, InvalidOperation) as e:
        raise ConfigurationError(
            f"rate {currency} {day!r}: {rate!r} must be a YYYY-MM-DD date and a decimal string"
        ) from e
    return effective, value


def _check_history(currency: str, history: RateHistory) -> None:
    days = [effective for effective, _ in history]
    if days != sorted(set(days)):
        raise ConfigurationError(f"rates for {currency} must be sorted by date, one per date")
    for effective, rate in history:
        if not rate.is_finite() or rate <= 0:
            raise ConfigurationError(f"rate {currency} {effective}: {rate} must be positive")
