"""The canonical order every channel is mapped to (DESIGN section 3)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import BeijingTime, Contract, Money


class Channel(StrEnum):
    """Sales channels orderhub understands."""

    TAOBAO = "taobao"
    JD = "jd"
    PDD = "pdd"
    DOUYIN = "douyin"
    WECHAT = "wechat"
    SHOPIFY = "shopify"
    AMAZON = "amazon"
    CSV = "csv"


ID_PREFIX: dict[Channel, str] = {
    Channel.TAOBAO: "TB",
    Channel.JD: "JD",
    Channel.PDD: "PDD",
    Channel.DOUYIN: "DY",
    Channel.WECHAT: "WX",
    Channel.SHOPIFY: "SHOP",
    Channel.AMAZON: "AMZ",
    Channel.CSV: "CSV",
}


def canonical_id(channel: Channel, native_id: str) -> str:
    """Canonical order id: the channel prefix followed by the native id, as a string."""
    return f"{ID_PREFIX[channel]}{native_id}"


class OrderStatus(StrEnum):
    """Canonical order statuses; `schemas.status` owns the allowed transitions."""

    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    REVIEW_HOLD = "review_hold"
    APPROVAL_HOLD = "approval_hold"
    BACKORDERED = "backordered"
    ALLOCATED = "allocated"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    RETURN_REQUESTED = "return_requested"
    RETURNED = "returned"
    DUPLICATE = "duplicate"


class OrderLine(Contract):
    """One line of an order, keyed by the merchant's own SKU."""

    sku: str | None = Field(description="merchant SKU (outer_sku_id / outer_id / SellerSKU / sku)")
    channel_sku_id: str | None = Field(default=None, description="the channel's own SKU id")
    title: str = Field(default="", description="item title as the channel shows it")
    quantity: int = Field(ge=0, le=1_000_000, description=(
        "units ordered; 0 only on a cancelled order whose channel zeroes cancelled lines "
        "(Amazon reports a Canceled order's items with QuantityOrdered 0)"))
    unit_price: Money = Field(description="price of one unit, major units of `currency`")
    line_total: Money = Field(description="amount of the line after line discounts")


class Recipient(Contract):
    """Ship-to party: masked or ciphertext exactly as the channel sent it."""

    name: str | None = None
    phone: str | None = None
    country: str | None = Field(default=None, description="ISO 3166 alpha-2")
    province: str | None = None
    city: str | None = None
    district: str | None = None
    address: str | None = None
    postal_code: str | None = None


class Order(Contract):
    """The canonical order: field names are the contract and may not be renamed."""

    id: str = Field(description="canonical order id: channel prefix + native id")
    channel: Channel
    shop: str
    native_id: str
    native_status: str
    status: OrderStatus
    created_at: BeijingTime
    paid_at: BeijingTime | None = None
    updated_at: BeijingTime
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 of the amounts")
    goods_amount: Money
    shipping_amount: Money
    discount_amount: Money
    paid_amount: Money
    paid_cny: Money = Field(description="paid_amount converted to CNY with the dated rate table")
    lines: tuple[OrderLine, ...] = Field(min_length=1)
    recipient: Recipient | None = None
    buyer_note: str | None = None
    flags: tuple[str, ...] = ()
    buyer_openid: str | None = Field(default=None, description=(
        "the buyer's WeChat openid when the channel gives one (WeChat shop); notify uses it"))

    @model_validator(mode="after")
    def _zero_quantity_only_when_cancelled(self) -> Order:
        if self.status is not OrderStatus.CANCELLED and any(
                line.quantity == 0 for line in self.lines):
            raise ValueError("a line with quantity 0 is only possible on a cancelled order")
        return self
