"""What a demo buyer bought and when, and the money, time and id writing channels share."""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from ingest.demo import DemoSku
from schemas.base import SHANGHAI

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Item:
    """One line of a sale: a catalogue SKU, how many, and its place in the catalogue."""

    sku: DemoSku
    quantity: int
    product_no: int  # the product's position in the catalogue: channel listing ids derive from it
    variant_no: int  # the SKU's position in the catalogue


@dataclass(frozen=True)
class Sale:
    """What a buyer bought and when, before a channel writes it down in its own format."""

    seq: int  # the sale's number among its channel's sales in this run: ids derive from it
    placed: datetime
    paid: datetime
    updated: datetime
    items: tuple[Item, ...]
    note: str | None


@dataclass(frozen=True)
class Region:
    """A delivery area as Chinese channels send it in clear text."""

    province: str
    city: str
    district: str
    street: str
    road: str
    postal_code: str
    codes: tuple[str, str, str, str]  # GB/T 2260 province, city, district, street (Douyin ids)
    jd_province_id: str


@dataclass(frozen=True)
class Buyer:
    """A Chinese buyer; channels only ever send the name, phone and road masked or encrypted."""

    name: str
    phone_head: str
    phone_tail: str
    region: Region


# fmt: off
_REGIONS = (
    Region("浙江省", "杭州市", "西湖区", "文新街道", "文三路478号", "310012",
           ("33", "330100", "330106", "330106011"), "15"),
    Region("广东省", "深圳市", "南山区", "粤海街道", "科苑路15号", "518057",
           ("44", "440300", "440305", "440305007"), "19"),
    Region("江苏省", "南京市", "鼓楼区", "湖南路街道", "中山北路30号", "210008",
           ("32", "320100", "320106", "320106002"), "12"),
    Region("四川省", "成都市", "武侯区", "浆洗街街道", "人民南路四段12号", "610041",
           ("51", "510100", "510107", "510107001"), "22"),
    Region("湖北省", "武汉市", "洪山区", "珞南街道", "珞喻路1037号", "430074",
           ("42", "420100", "420111", "420111002"), "17"),
    Region("福建省", "厦门市", "思明区", "鹭江街道", "湖滨南路90号", "361004",
           ("35", "350200", "350203", "350203004"), "16"),
    Region("山东省", "青岛市", "市南区", "八大峡街道", "香港中路10号", "266071",
           ("37", "370200", "370202", "370202011"), "13"),
    Region("河南省", "郑州市", "金水区", "花园路街道", "花园路38号", "450008",
           ("41", "410100", "410105", "410105002"), "7"),
)
# fmt: on
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙"
_GIVEN = ("芳", "娜", "伟", "洋", "静", "敏", "磊", "丽", "欣怡", "子涵", "浩然", "梓萱")
_PHONE_HEADS = ("138", "139", "136", "158", "187", "135", "186", "152", "177", "199")
_NOTES = ("请尽快发货，谢谢", "孩子生日礼物，请不要放价格单", "麻烦发顺丰", "尺码偏小的话能换吗")
Price = Callable[[DemoSku], Decimal]


def make_sale(
    rng: random.Random, seq: int, placed: datetime, catalogue: Sequence[DemoSku]
) -> Sale:
    """One to three different catalogue SKUs, one to three of each, paid within two minutes."""
    products = list(dict.fromkeys(sku.title for sku in catalogue))
    picked = rng.sample(range(len(catalogue)), rng.randint(1, 3))
    items = tuple(
        Item(catalogue[i], rng.randint(1, 3), products.index(catalogue[i].title), i)
        for i in picked
    )
    paid = placed + timedelta(seconds=rng.randint(5, 120))
    updated = paid + timedelta(seconds=rng.randint(1, 60))
    note = rng.choice(_NOTES) if rng.random() < 0.15 else None
    return Sale(seq, placed, paid, updated, items, note)


def chinese_buyer(rng: random.Random) -> Buyer:
    """A buyer somewhere in China, with a phone known only by its head and tail."""
    return Buyer(rng.choice(_SURNAMES) + rng.choice(_GIVEN), rng.choice(_PHONE_HEADS),
                 f"{rng.randrange(10_000):04d}", rng.choice(_REGIONS))


def serial(rng: random.Random, base: int, seq: int, stride: int, spread: int = 0) -> int:
    """The seq-th id of a run, at a random spot in its own stride: unique, rising, not sequential.

    A `spread` smaller than the stride keeps the rest of the stride free for sub-order ids.
    """
    return base + seq * stride + rng.randrange(spread or stride)


def split(amount: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """`amount` shared in proportion to `weights`, to the fen; the last share takes the rest."""
    whole = sum(weights, Decimal(0))
    shares = [cents(amount * weight / whole) for weight in weights[:-1]]
    return [*shares, amount - sum(shares, Decimal(0))]


def total(items: Sequence[Item], price: Price) -> Decimal:
    """What the items cost at the channel's price."""
    return sum((price(item.sku) * item.quantity for item in items), Decimal(0))


def shop_discount(goods: Decimal) -> Decimal:
    """The shop's standing offer on the Chinese channels: 20 yuan off from 199."""
    return Decimal(20) if goods >= 199 else Decimal(0)


def cn_postage(goods: Decimal) -> Decimal:
    """Free delivery in China from 99 yuan, else 8."""
    return Decimal(0) if goods >= 99 else Decimal(8)


def cny(sku: DemoSku) -> Decimal:
    return sku.price_cny


def usd(sku: DemoSku) -> Decimal:
    return sku.price_usd


def variant(sku: DemoSku) -> tuple[str, str]:
    """(colour, size) of a variant title such as `红色 / 110cm`."""
    colour, _, size = sku.variant_title.partition(" / ")
    return colour, size


def size_label(size: str) -> str:
    return "参考身高" if size.endswith("cm") else "尺码"


def product_code(sku: DemoSku) -> str:
    """The merchant's product code: the SKU without colour and size (TQF-TEE-RED-110 → TQF-TEE)."""
    return "-".join(sku.sku.split("-")[:2])


def listing_title(sku: DemoSku) -> str:
    colour, size = variant(sku)
    return f"{sku.title} {colour} {size}"


def short_province(province: str) -> str:
    return province.removesuffix("省")


def mask_digits(text: str) -> str:
    return re.sub(r"[0-9]", "*", text)


def cipher(rng: random.Random, size: int) -> str:
    """Base64 of random bytes: what an encrypted PII field looks like, and nothing more."""
    return base64.b64encode(rng.randbytes(size)).decode("ascii")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def yuan(amount: Decimal) -> str:
    """A decimal string in major units, as Taobao, JD, Shopify and Amazon send money."""
    return format(cents(amount), "f")


def number(amount: Decimal) -> float:
    """A JSON number in yuan, as Pinduoduo's order APIs send money.

    A float only because that is PDD's wire format, which the demo reproduces; the amount is
    computed in Decimal, and normalize reads it back through its repr, never float arithmetic.
    """
    return float(cents(amount))


def fen(amount: Decimal) -> int:
    """An integer amount in fen, as Douyin and WeChat send money."""
    return int(cents(amount) * 100)


def beijing(at: datetime) -> str:
    """A naive `yyyy-MM-dd HH:mm:ss` in Beijing time (Taobao, JD, Pinduoduo)."""
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def unix(at: datetime) -> int:
    return int(at.timestamp())


def zulu(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
