"""Base model and field types shared by every orderhub contract."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, PlainSerializer

SHANGHAI = ZoneInfo("Asia/Shanghai")


def to_shanghai(value: datetime) -> datetime:
    """Express an aware datetime in Asia/Shanghai (+08:00), the hub's wall clock."""
    return value.astimezone(SHANGHAI)


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


BeijingTime = Annotated[AwareDatetime, AfterValidator(to_shanghai)]
"""An aware time, always carried as +08:00 on the wire and in the projection."""

Money = Annotated[Decimal, PlainSerializer(_decimal_text, return_type=str, when_used="json")]
"""A decimal amount in major units; serialized as a plain decimal string, never a float."""


class Contract(BaseModel):
    """Base for orderhub's own models: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")
