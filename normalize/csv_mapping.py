"""A merchant's CSV/Excel layout: which column holds each canonical field, and how to read it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from schemas.order import OrderStatus


def _names(value: Any) -> Any:
    # One header name is a list of one, so a merchant can write {"order_id": "Order No."}.
    return (value,) if isinstance(value, str) else value


Headers = Annotated[tuple[str, ...], BeforeValidator(_names)]
"""Header names accepted for one field, in order of preference; empty = the file has none."""


class MoneyUnit(StrEnum):
    YUAN = "yuan"
    FEN = "fen"


S = OrderStatus

# Native status text (compared stripped and case-folded) -> canonical status.
DEFAULT_STATUS_MAP: Mapping[str, OrderStatus] = MappingProxyType({
    **{s.value: s for s in OrderStatus},
    "pending": S.PENDING_PAYMENT, "unpaid": S.PENDING_PAYMENT, "canceled": S.CANCELLED,
    "待付款": S.PENDING_PAYMENT, "等待买家付款": S.PENDING_PAYMENT, "未付款": S.PENDING_PAYMENT,
    "待发货": S.PAID, "已付款": S.PAID, "买家已付款": S.PAID, "等待卖家发货": S.PAID,
    "已发货": S.SHIPPED, "卖家已发货": S.SHIPPED, "待收货": S.SHIPPED,
    "等待买家确认收货": S.SHIPPED,
    "已签收": S.DELIVERED, "已收货": S.DELIVERED,
    "已完成": S.COMPLETED, "交易成功": S.COMPLETED, "交易完成": S.COMPLETED,
    "已取消": S.CANCELLED, "交易关闭": S.CANCELLED, "已关闭": S.CANCELLED,
    "已退款": S.REFUNDED, "退款成功": S.REFUNDED,
})

DEFAULT_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
    "%Y/%m/%d", "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日",
)


class CsvColumns(BaseModel):
    """Header names per canonical field: orderhub's own first, then common Chinese exports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: Headers = ("order_id", "订单号", "订单编号", "主订单编号")
    created_at: Headers = ("created_at", "下单时间", "创建时间", "订单创建时间")
    paid_at: Headers = ("paid_at", "付款时间", "支付时间", "订单付款时间")
    updated_at: Headers = ("updated_at", "更新时间", "修改时间")
    status: Headers = ("status", "订单状态")
    currency: Headers = ("currency", "币种")
    sku: Headers = ("sku", "商家编码", "商品编码")
    title: Headers = ("title", "商品名称", "商品标题", "宝贝标题")
    quantity: Headers = ("quantity", "数量", "购买数量", "商品数量")
    unit_price: Headers = ("unit_price", "单价", "商品单价")
    line_total: Headers = ("line_total", "小计")
    shipping: Headers = ("shipping_amount", "shipping", "运费")
    discount: Headers = ("discount_amount", "discount", "优惠", "优惠金额")
    paid_amount: Headers = ("paid_amount", "实付金额", "实付款", "买家实际支付金额")
    recipient_name: Headers = ("recipient_name", "收货人", "收货人姓名")
    recipient_phone: Headers = ("recipient_phone", "phone", "手机", "联系电话", "联系手机")
    province: Headers = ("province", "省", "省份")
    city: Headers = ("city", "市", "城市")
    district: Headers = ("district", "区", "区县")
    address: Headers = ("address", "详细地址", "收货地址")
    postal_code: Headers = ("postal_code", "邮编")
    country: Headers = ("country", "国家")
    buyer_note: Headers = ("buyer_note", "买家留言", "买家备注")

    def find(self, field: str, header: Iterable[str]) -> str | None:
        """The file's own header for `field`: the first accepted name it has (trimmed, any case)."""
        present = {_key(name): name for name in header}
        wanted: tuple[str, ...] = getattr(self, field)
        return next((present[_key(n)] for n in wanted if _key(n) in present), None)


class CsvMapping(BaseModel):
    """How one merchant's export reads; every field has a default that suits common exports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: CsvColumns = CsvColumns()
    time_zone: str = Field(default="Asia/Shanghai", description="zone of naive times")
    time_formats: tuple[str, ...] = Field(
        default=DEFAULT_TIME_FORMATS, description="strptime formats tried after ISO-8601"
    )
    currency: str = Field(default="CNY", min_length=3, max_length=3,
                          description="ISO 4217 of the amounts when no column names it")
    country: str = Field(default="CN", description="recipient country when no column names it")
    money_unit: MoneyUnit = MoneyUnit.YUAN
    status_map: dict[str, OrderStatus] = Field(
        default_factory=dict,
        description="native status -> canonical; added to (and overriding) DEFAULT_STATUS_MAP",
    )
    id_prefix: str = Field(default="CSV", min_length=1, description="canonical id prefix")
    encoding: str = Field(default="utf-8-sig", description="CSV text encoding, e.g. gb18030")
    sheet: str | None = Field(default=None, description="workbook sheet; unset = the first")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {value!r}") from e
        return value

    @field_validator("time_formats")
    @classmethod
    def _usable_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        sample = datetime(2001, 2, 3, 4, 5, 6)
        for pattern in value:
            try:
                datetime.strptime(sample.strftime(pattern), pattern)
            except ValueError as e:
                raise ValueError(f"time format {pattern!r} cannot be read back: {e}") from e
        return value

    @field_validator("currency", "country")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            "".encode(value)
        except LookupError as e:
            raise ValueError(f"unknown encoding {value!r}") from e
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def status_for(self, native: str) -> OrderStatus | None:
        """The canonical status of a native status text, None when it is not known."""
        key = _key(native)
        own = {_key(k): v for k, v in self.status_map.items()}
        return own.get(key, DEFAULT_STATUS_MAP.get(key))

    def known_statuses(self) -> list[str]:
        return sorted({*DEFAULT_STATUS_MAP, *self.status_map})


DEFAULT = CsvMapping()
"""The built-in mapping `default`: orderhub's own column names and common Chinese headers."""
DEFAULT_NAME = "default"


def _key(text: str) -> str:
    return text.strip().casefold()
