"""Deterministic demo data: a children's clothing catalogue, a warehouse, Shopify order webhooks."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from schemas.errors import ConfigurationError

FIRST_ORDER_ID = 6200407294252
FIRST_ORDER_NUMBER = 1001
CENT = Decimal("0.01")
DOMESTIC_OFFSET = timezone(timedelta(hours=8))
INTL_OFFSET = timezone(timedelta(hours=-5))
DEFAULT_SHOPS = ("tongqufang.myshopify.com", "tongqufang-intl.myshopify.com")


@dataclass(frozen=True)
class DemoSku:
    """A merchant SKU as the demo shop sells it on Shopify."""

    sku: str
    title: str
    variant_title: str
    price_cny: Decimal
    price_usd: Decimal
    product_id: int
    variant_id: int


@dataclass(frozen=True)
class DemoWarehouse:
    """The demo merchant's only warehouse."""

    code: str
    name: str
    province: str
    city: str


@dataclass(frozen=True)
class Shop:
    """How one demo shop sells: its currency, clock, shipping and discount code."""

    domain: str
    currency: str
    offset: timezone
    shipping_fee: Decimal
    free_shipping_from: Decimal
    discount_code: str
    domestic: bool


_STYLES: tuple[tuple[str, str, str, str, str, int], ...] = (
    # (SKU, product title, variant title, CNY, USD, product number)
    ("TQF-TEE-RED-110", "童趣坊纯棉短袖T恤", "红色 / 110cm", "59.00", "8.99", 1),
    ("TQF-TEE-RED-120", "童趣坊纯棉短袖T恤", "红色 / 120cm", "59.00", "8.99", 1),
    ("TQF-TEE-BLU-110", "童趣坊纯棉短袖T恤", "蓝色 / 110cm", "59.00", "8.99", 1),
    ("TQF-TEE-BLU-130", "童趣坊纯棉短袖T恤", "蓝色 / 130cm", "59.00", "8.99", 1),
    ("TQF-DRS-PNK-120", "童趣坊碎花连衣裙", "粉色 / 120cm", "129.00", "19.99", 2),
    ("TQF-DRS-PNK-130", "童趣坊碎花连衣裙", "粉色 / 130cm", "129.00", "19.99", 2),
    ("TQF-PNT-KHK-110", "童趣坊休闲长裤", "卡其色 / 110cm", "89.00", "13.99", 3),
    ("TQF-PNT-KHK-120", "童趣坊休闲长裤", "卡其色 / 120cm", "89.00", "13.99", 3),
    ("TQF-HOD-GRY-120", "童趣坊连帽卫衣", "灰色 / 120cm", "149.00", "22.99", 4),
    ("TQF-HOD-GRY-140", "童趣坊连帽卫衣", "灰色 / 140cm", "149.00", "22.99", 4),
    ("TQF-JKT-NVY-130", "童趣坊防风外套", "藏青色 / 130cm", "199.00", "29.99", 5),
    ("TQF-SCK-MIX-3P", "童趣坊儿童棉袜三双装", "混色 / 均码", "29.00", "4.99", 6),
)

# fmt: off
_ADDRESSES: dict[str, tuple[tuple[str, ...], ...]] = {
    # country code -> (name, phone, province, province code, city, address1, address2, zip)
    "CN": (
        ("王芳", "138****5678", "浙江省", "ZJ", "杭州市", "西湖区文三路478号", "A座1201", "310012"),
        ("李娜", "139****2046", "上海市", "SH", "上海市", "浦东新区张杨路500号", "", "200122"),
        ("张伟", "136****8831", "广东省", "GD", "深圳市", "南山区科苑路15号", "3栋702", "518057"),
        ("刘洋", "158****0917", "江苏省", "JS", "南京市", "鼓楼区中山北路30号", "", "210008"),
        ("陈静", "187****4420", "北京市", "BJ", "北京市", "朝阳区建国路88号", "5号楼", "100022"),
        ("杨敏", "135****7362", "四川省", "SC", "成都市", "武侯区人民南路12号", "", "610041"),
        ("赵磊", "186****3058", "湖北省", "HB", "武汉市", "洪山区珞喻路1037号", "8栋", "430074"),
        ("黄丽", "152****6194", "福建省", "FJ", "厦门市", "思明区湖滨南路90号", "", "361004"),
    ),
    "US": (
        ("Emily Carter", "415-***-0142", "California", "CA", "San Francisco", "1 Market St",
         "Apt 5", "94105"),
        ("Jessica Nguyen", "206-***-7730", "Washington", "WA", "Seattle", "400 Pine St", "",
         "98101"),
        ("Michael Brooks", "212-***-3318", "New York", "NY", "New York", "350 W 42nd St",
         "Unit 12B", "10036"),
        ("Sarah Kim", "312-***-9054", "Illinois", "IL", "Chicago", "233 S Wacker Dr", "",
         "60606"),
        ("David Lopez", "512-***-2267", "Texas", "TX", "Austin", "500 E Cesar Chavez St", "",
         "78701"),
    ),
}
# fmt: on
_COUNTRY_NAMES = {"CN": "China", "US": "United States"}

_NOTES = (
    "请尽快发货，谢谢",
    "孩子生日礼物，请不要放价格单",
    "Please gift wrap, it's a birthday present",
    "Leave the parcel at the front desk",
)


def demo_catalogue() -> tuple[DemoSku, ...]:
    """About a dozen SKUs of the demo children's clothing brand 童趣坊 (TQF)."""
    return tuple(
        DemoSku(
            sku=sku,
            title=title,
            variant_title=variant,
            price_cny=Decimal(cny),
            price_usd=Decimal(usd),
            product_id=8012345670000 + product,
            variant_id=44012345678901 + i,
        )
        for i, (sku, title, variant, cny, usd, product) in enumerate(_STYLES)
    )


def demo_warehouse() -> DemoWarehouse:
    """The demo merchant's warehouse in Hangzhou."""
    return DemoWarehouse(code="WH-HZ", name="杭州仓", province="浙江省", city="杭州市")


def demo_shop(domain: str, *, domestic: bool) -> Shop:
    """A domestic shop sells in CNY on Beijing time; an international one in USD at -05:00."""
    if domestic:
        return Shop(
            domain, "CNY", DOMESTIC_OFFSET, Decimal("10.00"), Decimal("99.00"), "TQF10", True
        )
    return Shop(domain, "USD", INTL_OFFSET, Decimal("12.00"), Decimal("80.00"), "WELCOME10", False)


def generate_shopify_orders(
    n: int,
    *,
    seed: int,
    start: datetime,
    shops: Sequence[str] = DEFAULT_SHOPS,
) -> list[tuple[str, dict[str, Any]]]:
    """`n` paid Shopify orders/create webhook bodies as (shop, payload), a few minutes apart.

    The first shop is the domestic one (CNY, +08:00); every other shop sells abroad (USD, -05:00).
    The same seed and start always give the same orders.
    """
    return list(iter_shopify_orders(n, seed=seed, start=start, shops=shops))


def iter_shopify_orders(
    n: int,
    *,
    seed: int,
    start: datetime,
    shops: Sequence[str] = DEFAULT_SHOPS,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The orders of `generate_shopify_orders`, one at a time: a million of them as a list
    would hold gigabytes."""
    if n < 0 or not shops or start.utcoffset() is None:
        raise ConfigurationError("demo orders need n >= 0, at least one shop and an aware start")
    return _orders(n, random.Random(seed), start, shops)


def _orders(n: int, rng: random.Random, start: datetime, shops: Sequence[str]
            ) -> Iterator[tuple[str, dict[str, Any]]]:
    catalogue = demo_catalogue()
    profiles = [demo_shop(domain, domestic=i == 0) for i, domain in enumerate(shops)]
    at = start
    for i in range(n):
        at += timedelta(seconds=rng.randint(20, 900))
        shop = rng.choice(profiles)
        yield shop.domain, _order(i, rng, shop, catalogue, at)


def required_stock(orders: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, int]:
    """Units per SKU that the given (shop, payload) orders need."""
    needed: dict[str, int] = {}
    for _shop, payload in orders:
        for item in payload["line_items"]:
            needed[item["sku"]] = needed.get(item["sku"], 0) + item["quantity"]
    return needed


def _order(
    i: int, rng: random.Random, shop: Shop, catalogue: Sequence[DemoSku], at: datetime
) -> dict[str, Any]:
    order_id = FIRST_ORDER_ID + i
    discounted = rng.random() < 0.25
    items = [
        _line_item(order_id, j, sku, rng.randint(1, 3), shop, discounted)
        for j, sku in enumerate(rng.sample(list(catalogue), rng.randint(1, 3)))
    ]
    created = at.astimezone(shop.offset)
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{FIRST_ORDER_NUMBER + i}",
        "order_number": FIRST_ORDER_NUMBER + i,
        "number": i + 1,
        "email": f"buyer{i + 1}@example.com",
        "created_at": _iso(created),
        "processed_at": _iso(created),
        "updated_at": _iso(created + timedelta(seconds=rng.randint(1, 30))),
        "cancelled_at": None,
        "cancel_reason": None,
        "closed_at": None,
        "confirmed": True,
        "test": False,
        "financial_status": "paid",
        "fulfillment_status": None,
        "currency": shop.currency,
        "presentment_currency": shop.currency,
        "customer_locale": "zh-CN" if shop.domestic else "en-US",
        "source_name": "web",
        "tags": "",
        "note": rng.choice(_NOTES) if rng.random() < 0.2 else None,
        "payment_gateway_names": ["Alipay Global"] if shop.domestic else ["shopify_payments"],
        "discount_codes": _discount_codes(shop, items) if discounted else [],
        "discount_applications": [_discount_application(shop)] if discounted else [],
        "line_items": items,
        **_money(shop, items, order_id),
        **_parties(rng, shop, i),
    }


def _line_item(
    order_id: int, j: int, sku: DemoSku, quantity: int, shop: Shop, discounted: bool
) -> dict[str, Any]:
    price = sku.price_cny if shop.domestic else sku.price_usd
    discount = _cents(price * quantity / 10) if discounted else Decimal(0)
    line_id = 15600000000000 + (order_id - FIRST_ORDER_ID) * 10 + j
    return {
        "id": line_id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line_id}",
        "product_id": sku.product_id,
        "variant_id": sku.variant_id,
        "sku": sku.sku,
        "title": sku.title,
        "variant_title": sku.variant_title,
        "name": f"{sku.title} - {sku.variant_title}",
        "vendor": "童趣坊",
        "quantity": quantity,
        "fulfillable_quantity": quantity,
        "fulfillment_status": None,
        "requires_shipping": True,
        "taxable": True,
        "gift_card": False,
        "price": _text(price),
        "price_set": _money_set(price, shop.currency),
        "total_discount": _text(discount),
        "discount_allocations": [_allocation(discount, shop.currency)] if discount else [],
    }


def _allocation(amount: Decimal, currency: str) -> dict[str, Any]:
    return {
        "amount": _text(amount),
        "amount_set": _money_set(amount, currency),
        "discount_application_index": 0,
    }


def _discount_codes(shop: Shop, items: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    amount = _line_discounts(items)
    return [{"code": shop.discount_code, "amount": _text(amount), "type": "percentage"}]


def _discount_application(shop: Shop) -> dict[str, str]:
    return {
        "type": "discount_code",
        "code": shop.discount_code,
        "value": "10.0",
        "value_type": "percentage",
        "allocation_method": "across",
        "target_selection": "all",
        "target_type": "line_item",
    }


def _money(shop: Shop, items: Sequence[Mapping[str, Any]], order_id: int) -> dict[str, Any]:
    goods = sum((Decimal(item["price"]) * item["quantity"] for item in items), Decimal(0))
    discount = _line_discounts(items)
    subtotal = goods - discount
    shipping = Decimal(0) if subtotal >= shop.free_shipping_from else shop.shipping_fee
    total = subtotal + shipping
    amounts = {
        "total_line_items_price": goods,
        "total_discounts": discount,
        "subtotal_price": subtotal,
        "total_tax": Decimal(0),
        "total_price": total,
    }
    return {
        **{key: _text(value) for key, value in amounts.items()},
        **{f"{key}_set": _money_set(value, shop.currency) for key, value in amounts.items()},
        "total_shipping_price_set": _money_set(shipping, shop.currency),
        "taxes_included": shop.domestic,
        "shipping_lines": [_shipping_line(order_id, shipping, shop)],
    }


def _line_discounts(items: Sequence[Mapping[str, Any]]) -> Decimal:
    allocations = (a for item in items for a in item["discount_allocations"])
    return sum((Decimal(a["amount"]) for a in allocations), Decimal(0))


def _shipping_line(order_id: int, price: Decimal, shop: Shop) -> dict[str, Any]:
    title = "顺丰速运" if shop.domestic else "International Standard"
    return {
        "id": 4800000000000 + order_id - FIRST_ORDER_ID,
        "title": title,
        "code": title,
        "source": "shopify",
        "price": _text(price),
        "price_set": _money_set(price, shop.currency),
        "discounted_price": _text(price),
        "discount_allocations": [],
    }


def _parties(rng: random.Random, shop: Shop, i: int) -> dict[str, Any]:
    address = _address(rng, "CN" if shop.domestic else "US")
    # Each demo order a different buyer: the last four digits of the masked phone vary, so two
    # demo orders of the same basket are not the same purchase to dedup.
    address["phone"] = f"{address['phone'][:-4]}{(i * 7919 + 1234) % 10000:04d}"
    customer = {
        "id": 7300000000000 + i,
        "email": f"buyer{i + 1}@example.com",
        "first_name": address["first_name"],
        "last_name": address["last_name"],
        "phone": address["phone"],
        "currency": shop.currency,
    }
    return {"shipping_address": address, "billing_address": dict(address), "customer": customer}


def _address(rng: random.Random, country_code: str) -> dict[str, Any]:
    name, phone, province, code, city, address1, address2, zip_code = rng.choice(
        _ADDRESSES[country_code]
    )
    # Chinese names put the family name first, written without a space.
    first, last = name.split(" ", 1) if " " in name else (name[1:], name[0])
    return {
        "name": name,
        "first_name": first,
        "last_name": last,
        "phone": phone,
        "province": province,
        "province_code": code,
        "city": city,
        "address1": address1,
        "address2": address2 or None,
        "zip": zip_code,
        "country": _COUNTRY_NAMES[country_code],
        "country_code": country_code,
        "company": None,
    }


def _money_set(amount: Decimal, currency: str) -> dict[str, dict[str, str]]:
    money = {"amount": _text(amount), "currency_code": currency}
    return {"shop_money": money, "presentment_money": dict(money)}


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _text(amount: Decimal) -> str:
    return format(_cents(amount), "f")


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")
