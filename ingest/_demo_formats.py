"""The demo shop's paid orders written the way each channel's order API returns them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ingest._demo_sale import (
    Buyer,
    Item,
    Sale,
    beijing,
    cents,
    chinese_buyer,
    cipher,
    cn_postage,
    cny,
    fen,
    listing_title,
    mask_digits,
    number,
    product_code,
    serial,
    shop_discount,
    short_province,
    size_label,
    split,
    total,
    unix,
    usd,
    variant,
    yuan,
    zulu,
)
from ingest.demo import DemoSku
from schemas.base import SHANGHAI

NOT_YET = "0001-01-01 00:00:00"  # JD's "no such time yet"
DOUYIN_SHOP_ID = 4471926
STORE_NAME = "童趣坊童装旗舰店"

# (name, address line, city, state, zip, phone, sales tax rate)
_US_BUYERS = (
    ("Emily Carter", "1 Market St Apt 5", "San Francisco", "CA", "94105", "+1 415-555-0142",
     "0.08625"),
    ("Jessica Nguyen", "400 Pine St", "Seattle", "WA", "98101-2345", "+1 206-555-7730",
     "0.1035"),
    ("Michael Brooks", "350 W 42nd St Unit 12B", "New York", "NY", "10036", "+1 212-555-3318",
     "0.08875"),
    ("Sarah Kim", "233 S Wacker Dr", "Chicago", "IL", "60606", "+1 312-555-9054", "0.1025"),
    ("Olivia Reed", "1120 NW Couch St", "Portland", "OR", "97209", "+1 503-555-2267", "0"),
)
_ENGLISH_TITLES = {
    "童趣坊纯棉短袖T恤": "TQF Kids Cotton Short Sleeve T-Shirt",
    "童趣坊碎花连衣裙": "TQF Girls Floral Print Dress",
    "童趣坊休闲长裤": "TQF Kids Casual Pants",
    "童趣坊连帽卫衣": "TQF Kids Hooded Sweatshirt",
    "童趣坊防风外套": "TQF Kids Windproof Jacket",
    "童趣坊儿童棉袜三双装": "TQF Kids Cotton Socks, 3 Pairs",
}
_ENGLISH_COLOURS = {"红色": "Red", "蓝色": "Blue", "粉色": "Pink", "卡其色": "Khaki",
                    "灰色": "Grey", "藏青色": "Navy", "混色": "Assorted"}


def taobao(rng: random.Random, sale: Sale) -> dict[str, Any]:
    """A TOP trade (trade.fullinfo.get `trade`): 19-digit tid, yuan strings, naive Beijing times."""
    # Sub-order ids sit k * 10^12 above the tid, as in TOP responses.
    tid = serial(rng, 4_118_203_000_000_000_000, sale.seq, 10**13, spread=10**12)
    goods = total(sale.items, cny)
    discount, postage = shop_discount(goods), cn_postage(goods)
    shares = split(goods - discount, [cny(i.sku) * i.quantity for i in sale.items])
    lone = len(sale.items) == 1  # TOP: a lone sub-order's payment includes the postage
    orders = [_taobao_order(tid + (j + 1) * 10**12, item, share, postage if lone else Decimal(0))
              for j, (item, share) in enumerate(zip(sale.items, shares, strict=True))]
    return {
        "tid": tid, "tid_str": str(tid), "status": "WAIT_SELLER_SEND_GOODS", "type": "fixed",
        "seller_nick": STORE_NAME, "buyer_open_uid": "AAG" + rng.randbytes(11).hex()[:21],
        "created": beijing(sale.placed), "pay_time": beijing(sale.paid),
        "modified": beijing(sale.updated), "total_fee": yuan(goods),
        "discount_fee": yuan(discount), "adjust_fee": "0.00", "post_fee": yuan(postage),
        "payment": yuan(goods - discount + postage), "received_payment": "0.00",
        "has_post_fee": postage > 0, "shipping_type": "express", "trade_from": "WAP,WAP",
        "has_buyer_message": sale.note is not None, "buyer_message": sale.note or "",
        **_taobao_receiver(rng, chinese_buyer(rng)),
        "promotion_details": {"promotion_detail": _taobao_promotions(tid, discount)},
        "orders": {"order": orders},
    }


def _taobao_order(oid: int, item: Item, payment: Decimal, postage: Decimal) -> dict[str, Any]:
    sku, price = item.sku, cny(item.sku)
    colour, size = variant(sku)
    return {
        "oid": oid, "oid_str": str(oid), "num_iid": 682_910_471_500 + item.product_no,
        "sku_id": str(4_987_231_005_100 + item.variant_no), "outer_iid": product_code(sku),
        "outer_sku_id": sku.sku, "title": sku.title,
        "sku_properties_name": f"颜色分类:{colour};{size_label(size)}:{size}",
        "num": item.quantity, "price": yuan(price), "total_fee": yuan(price * item.quantity),
        "payment": yuan(payment + postage), "divide_order_fee": yuan(payment),
        "discount_fee": "0.00", "adjust_fee": "0.00", "refund_status": "NO_REFUND",
        "status": "WAIT_SELLER_SEND_GOODS", "seller_type": "B", "order_from": "WAP,WAP",
    }


def _taobao_receiver(rng: random.Random, buyer: Buyer) -> dict[str, Any]:
    region = buyer.region
    return {
        "oaid": cipher(rng, 57), "receiver_name": f"~{cipher(rng, 16)}~{cipher(rng, 6)}~1~~",
        "receiver_mobile": f"${buyer.phone_head}${cipher(rng, 16)}$1$$", "receiver_phone": "",
        "receiver_state": region.province, "receiver_city": region.city,
        "receiver_district": region.district, "receiver_town": region.street,
        "receiver_address": f"~{cipher(rng, 32)}~{cipher(rng, 6)}~1~~",
        "receiver_zip": region.postal_code,
    }


def _taobao_promotions(tid: int, discount: Decimal) -> list[dict[str, Any]]:
    if not discount:
        return []
    return [{"id": tid, "promotion_name": "店铺满199减20", "discount_fee": yuan(discount),
             "promotion_id": "shopbonus-3350172_1190042188"}]


def jd(rng: random.Random, sale: Sale) -> dict[str, Any]:
    """A JD POP order (order.get `orderInfo`): orderId and itemTotal strings, 广东-style regions."""
    order_id = str(serial(rng, 312_694_357_000, sale.seq, 1000))
    goods = total(sale.items, cny)
    discount, freight = shop_discount(goods), cn_postage(goods)
    buyer = chinese_buyer(rng)
    region = buyer.region
    return {
        "orderId": order_id, "venderId": "10873341", "orderType": "22", "payType": "4-在线支付",
        "orderState": "WAIT_SELLER_STOCK_OUT", "orderStateRemark": "等待出库",
        "orderStartTime": beijing(sale.placed), "paymentConfirmTime": beijing(sale.paid),
        "modified": beijing(sale.updated), "orderEndTime": NOT_YET, "outBoundDate": NOT_YET,
        "orderTotalPrice": yuan(goods), "orderSellerPrice": yuan(goods - discount),
        "orderPayment": yuan(goods - discount + freight), "freightPrice": yuan(freight),
        "sellerDiscount": yuan(discount), "balanceUsed": "0.00", "orderRemark": sale.note or "",
        "venderRemark": "", "deliveryType": "任意时间", "invoiceInfo": "不需要开具发票",
        "orderSource": "移动端订单", "pin": f"jd_{rng.randbytes(7).hex()}",
        "parentOrderId": "0", "returnOrder": "0",
        "consigneeInfo": {
            "fullname": "AAS/" + cipher(rng, 30), "fullAddress": "AAS/" + cipher(rng, 60),
            "mobile": f"{buyer.phone_head}*******{buyer.phone_tail[-1]}",
            "province": short_province(region.province), "provinceId": region.jd_province_id,
            "city": region.city.removesuffix("市"), "county": region.district,
            "town": region.street,
        },
        "itemInfoList": [_jd_item(order_id, j, item) for j, item in enumerate(sale.items)],
        "couponDetailList": [] if not discount else [
            {"orderId": order_id, "couponType": "30-单品促销优惠", "couponPrice": yuan(discount)}
        ],
    }


def _jd_item(order_id: str, j: int, item: Item) -> dict[str, Any]:
    sku = item.sku
    return {
        "id": int(order_id) * 10 + j, "skuId": str(10_054_887_745_600 + item.variant_no),
        "wareId": str(10_020_665_903_500 + item.product_no), "outerSkuId": sku.sku,
        "productNo": product_code(sku), "skuName": listing_title(sku),
        "jdPrice": yuan(cny(sku)), "itemTotal": str(item.quantity), "giftPoint": "0",
        "newStoreId": "0",
    }


def pdd(rng: random.Random, sale: Sale) -> dict[str, Any]:
    """A Pinduoduo order (order.information.get `order_info`): yuan JSON numbers, ciphertext."""
    day = sale.placed.astimezone(SHANGHAI).strftime("%y%m%d")
    goods = total(sale.items, pdd_price)
    seller = Decimal(5) if goods >= 100 else Decimal(0)
    platform = Decimal(rng.choice((0, 0, 2, 3)))
    confirmed = sale.paid + timedelta(seconds=1)
    return {
        "order_sn": f"{day}-{serial(rng, 481_803_633_900_000, sale.seq, 1000):015d}",
        "order_status": 1, "refund_status": 1, "confirm_status": 1, "group_status": 1,
        "after_sales_status": 0, "created_time": beijing(sale.placed),
        "pay_time": beijing(sale.paid), "confirm_time": beijing(confirmed),
        "updated_at": beijing(sale.updated),
        "last_ship_time": beijing(confirmed + timedelta(hours=48)),
        "goods_amount": number(goods), "discount_amount": number(seller + platform),
        "seller_discount": number(seller), "platform_discount": number(platform),
        "capital_free_discount": 0.0, "duo_duo_pay_reduction": 0.0,
        "order_change_amount": 0.0, "postage": 0.0,
        "pay_amount": number(goods - seller - platform),
        "pay_type": rng.choice(("WEIXIN", "ALIPAY")),
        "pay_no": f"42000{rng.randrange(10**23):023d}", "buyer_memo": sale.note or "",
        "remark": "", "is_pre_sale": 0, "trade_type": 0, "shipping_type": 0, "tracking_number": "",
        "logistics_id": 0, "risk_control_status": 0, "shipping_time": "", "receive_time": "",
        **_pdd_receiver(rng, chinese_buyer(rng)),
        "item_list": [_pdd_item(item) for item in sale.items],
    }


def _pdd_receiver(rng: random.Random, buyer: Buyer) -> dict[str, Any]:
    region, key = buyer.region, cipher(rng, 6)
    street = region.street + mask_digits(region.road)
    return {
        "country": "中国", "country_id": 0, "province": region.province, "city": region.city,
        "town": region.district, "receiver_name": f"~AgAAAA{cipher(rng, 24)}~{key}~0~~",
        "receiver_name_mask": buyer.name[0] + "*" * (len(buyer.name) - 1),
        "receiver_phone": f"${cipher(rng, 8)}$AgAAAA{cipher(rng, 30)}$0$$",
        "receiver_phone_mask": f"{buyer.phone_head}****{buyer.phone_tail}",
        "receiver_address": f"~AgAAAA{cipher(rng, 45)}~{key}~0~~",
        "receiver_address_mask": street,
        "address": f"~AgAAAA{cipher(rng, 60)}~{key}~0~~",
        "address_mask": region.province + region.city + region.district + street,
    }


def _pdd_item(item: Item) -> dict[str, Any]:
    sku = item.sku
    colour, size = variant(sku)
    goods_id = 593_872_016_400 + item.product_no
    return {
        "goods_id": str(goods_id), "sku_id": str(1_288_437_716_200 + item.variant_no),
        "goods_name": sku.title, "goods_spec": f"{colour},{size}",
        "goods_img": f"https://img.pddpic.com/mms-material-img/2025-11-02/{goods_id}.jpeg.a.jpeg",
        "outer_goods_id": product_code(sku), "outer_id": sku.sku,
        "goods_count": item.quantity, "goods_price": number(pdd_price(sku)),
    }


def douyin(rng: random.Random, sale: Sale) -> dict[str, Any]:
    """A Douyin shop order (order.orderDetail): fen ints, Unix seconds, sku_id above 2^53."""
    order_id = serial(rng, 6_930_518_274_931_000_000, sale.seq, 10**6, spread=10**5)
    goods = total(sale.items, cny)
    shop, platform = shop_discount(goods), Decimal(rng.choice((0, 0, 3, 5)))
    postage = cn_postage(goods)
    weights = [cny(i.sku) * i.quantity for i in sale.items]
    promotions, posts = split(shop + platform, weights), split(postage, weights)
    # Douyin holds a paid order at 105 until its risk check passes, then moves it to 2.
    status, status_desc = (105, "已支付") if rng.random() < 0.25 else (2, "备货中")
    skus = [_douyin_sku(order_id, j, item, status, promotion, post)
            for j, (item, promotion, post) in enumerate(zip(sale.items, promotions, posts,
                                                            strict=True))]
    return {
        "shop_id": DOUYIN_SHOP_ID, "shop_name": STORE_NAME, "order_id": str(order_id),
        "order_level": 2, "biz": 2, "biz_desc": "小店", "order_type": 0, "trade_type": 0,
        "order_status": status, "order_status_desc": status_desc, "main_status": status,
        "main_status_desc": status_desc, "create_time": unix(sale.placed),
        "pay_time": unix(sale.paid), "update_time": unix(sale.updated), "finish_time": 0,
        "exp_ship_time": unix(sale.paid + timedelta(hours=48)), "ship_time": 0,
        "buyer_words": sale.note or "", "seller_words": "", "b_type": 2, "b_type_desc": "抖音",
        "pay_type": 1, "channel_payment_no": f"42000{rng.randrange(10**23):023d}",
        "order_amount": fen(goods + postage), "pay_amount": fen(goods + postage - shop - platform),
        "post_amount": fen(postage), "promotion_amount": fen(shop + platform),
        "promotion_shop_amount": fen(shop), "promotion_platform_amount": fen(platform),
        "shop_cost_amount": fen(shop), "platform_cost_amount": fen(platform),
        "total_promotion_amount": fen(shop + platform), "modify_amount": 0,
        "doudian_open_id": "1@#" + cipher(rng, 24), **_douyin_receiver(rng, chinese_buyer(rng)),
        "logistics_info": [], "sku_order_list": skus, "tax_amount": 0,
    }


def _douyin_sku(parent: int, j: int, item: Item, status: int, promotion: Decimal,
                post: Decimal) -> dict[str, Any]:
    sku, gross = item.sku, cny(item.sku) * item.quantity
    colour, size = variant(sku)
    product_id = 3_660_207_428_038_974_400 + item.product_no
    return {
        "order_id": str(parent + j + 1), "parent_order_id": str(parent), "order_level": 3,
        "order_status": status, "product_id": product_id, "product_id_str": str(product_id),
        "sku_id": 3_598_472_810_345_716_700 + item.variant_no, "product_name": sku.title,
        "spec": [{"name": "颜色", "value": colour}, {"name": size_label(size), "value": size}],
        "out_sku_id": sku.sku, "code": product_code(sku), "out_product_id": "0",
        "origin_amount": fen(cny(sku)), "item_num": item.quantity, "sum_amount": fen(gross),
        "pay_amount": fen(gross - promotion + post), "post_amount": fen(post),
        "promotion_amount": fen(promotion), "goods_type": 0, "pre_sale_type": 0,
        "after_sale_info": {"after_sale_status": 0, "after_sale_type": 0, "refund_status": 0},
        "product_pic": f"https://p3-aio.ecombdimg.com/obj/ecom-shop-material/{product_id}.jpg",
    }


def _douyin_receiver(rng: random.Random, buyer: Buyer) -> dict[str, Any]:
    region = buyer.region
    names = (region.province, region.city, region.district, region.street)
    areas = {key: {"id": code, "name": name} for key, code, name in
             zip(("province", "city", "town", "street"), region.codes, names, strict=True)}
    return {
        "post_tel": "", "encrypt_post_tel": f"$${cipher(rng, 42)}*{cipher(rng, 30)}$1$$",
        "post_receiver": "", "encrypt_post_receiver": f"##{cipher(rng, 36)}*{cipher(rng, 30)}#1##",
        "mask_post_tel": f"{buyer.phone_head[0]}********{buyer.phone_tail[-2:]}",
        "mask_post_receiver": buyer.name[0] + "**",
        "post_addr": {**areas, "detail": "",
                      "encrypt_detail": f"##{cipher(rng, 42)}*{cipher(rng, 30)}#1##"},
        "mask_post_addr": {**areas, "detail": mask_digits(region.road)},
    }


def wechat(rng: random.Random, sale: Sale) -> dict[str, Any]:
    """A WeChat Channels shop order (/channels/ec/order/get `order`): fen, Unix seconds."""
    goods = total(sale.items, cny)
    discount, freight = shop_discount(goods), cn_postage(goods)
    discounts = split(discount, [cny(i.sku) * i.quantity for i in sale.items])
    paid = goods - discount + freight
    products = [_wechat_product(item, line_discount)
                for item, line_discount in zip(sale.items, discounts, strict=True)]
    return {
        "order_id": str(serial(rng, 3_705_115_058_471_000_000, sale.seq, 10**6)), "status": 20,
        "create_time": unix(sale.placed), "update_time": unix(sale.updated),
        "order_detail": {
            "product_infos": products,
            "price_info": {
                "product_price": fen(goods), "order_price": fen(paid), "freight": fen(freight),
                "discounted_price": fen(discount), "is_discounted": discount > 0,
                "original_order_price": fen(goods + freight), "change_down_price": 0,
                "change_freight": 0, "is_change_freight": False,
                "merchant_receieve_price": fen(paid), "merchant_discounted_price": fen(discount),
                "finder_discounted_price": 0,
            },
            "delivery_info": {"address_info": _wechat_address(rng, chinese_buyer(rng)),
                              "delivery_product_info": [], "ship_done_time": 0,
                              "deliver_method": 0},
            "ext_info": {"customer_notes": sale.note or "", "merchant_notes": "",
                         "order_scene": 1},
            "pay_info": {"prepay_id": f"wx{unix(sale.placed)}{rng.randbytes(14).hex()}",
                         "prepay_time": unix(sale.placed), "pay_time": unix(sale.paid),
                         "payment_method": 1,
                         "transaction_id": f"42000{rng.randrange(10**23):023d}"},
        },
        "aftersale_detail": {"aftersale_order_list": [], "on_aftersale_order_cnt": 0},
        "openid": "oTqF" + rng.randbytes(12).hex(), "is_present": False,
    }


def _wechat_product(item: Item, discount: Decimal) -> dict[str, Any]:
    sku, price = item.sku, cny(item.sku)
    colour, size = variant(sku)
    product_id, sku_id = 10_000_123_456_700 + item.product_no, 2_345_678_900 + item.variant_no
    return {
        "product_id": str(product_id), "sku_id": str(sku_id), "sku_cnt": item.quantity,
        "sale_price": fen(price), "market_price": fen(price * Decimal("1.5")), "title": sku.title,
        "sku_code": sku.sku, "out_sku_id": sku.sku, "out_product_id": "",
        "sku_attrs": [{"attr_key": "颜色", "attr_value": colour},
                      {"attr_key": size_label(size), "attr_value": size}],
        "real_price": fen(price * item.quantity - discount), "is_discounted": discount > 0,
        "on_aftersale_sku_cnt": 0, "finish_aftersale_sku_cnt": 0, "is_change_price": False,
        "product_unique_id": f"{product_id}-{sku_id}",
    }


def _wechat_address(rng: random.Random, buyer: Buyer) -> dict[str, Any]:
    region = buyer.region
    return {
        "user_name": buyer.name[0] + "**",
        "tel_number": f"{buyer.phone_head}****{buyer.phone_tail}",
        "province_name": region.province, "city_name": region.city,
        "county_name": region.district, "detail_info": region.street + mask_digits(region.road),
        "postal_code": region.postal_code, "national_code": "", "house_number": "",
        "virtual_order_tel_number": "", "use_tel_number": 0, "hash_code": rng.randbytes(16).hex(),
    }


def amazon(rng: random.Random, sale: Sale) -> dict[str, Any]:
    """An SP-API Orders v0 order in USD, Unshipped, with getOrderItems' OrderItems attached."""
    name, line, city, state, zip_code, phone, tax = rng.choice(_US_BUYERS)
    promoted = rng.random() < 0.2
    shipping = Decimal("4.99") if total(sale.items, usd) < 35 else Decimal(0)
    items = [_amazon_item(sale.seq, j, item, shipping if j == 0 else Decimal(0), promoted,
                          Decimal(tax)) for j, item in enumerate(sale.items)]
    placed = zulu(sale.placed)
    return {
        "AmazonOrderId": _amazon_order_id(rng, sale.seq), "PurchaseDate": placed,
        "LastUpdateDate": zulu(sale.updated), "OrderStatus": "Unshipped",
        "FulfillmentChannel": "MFN", "SalesChannel": "Amazon.com",
        "ShipServiceLevel": "Std US D2D Dom", "OrderTotal": money(_amazon_total(items)),
        "NumberOfItemsShipped": 0, "NumberOfItemsUnshipped": sum(i.quantity for i in sale.items),
        "PaymentMethod": "Other", "PaymentMethodDetails": ["Standard"],
        "IsReplacementOrder": False, "MarketplaceId": "ATVPDKIKX0DER",
        "ShipmentServiceLevelCategory": "Standard", "OrderType": "StandardOrder",
        "EarliestShipDate": placed, "LatestShipDate": zulu(sale.placed + timedelta(days=2)),
        "IsBusinessOrder": False, "IsPrime": False, "IsPremiumOrder": False,
        "IsGlobalExpressEnabled": False,
        "BuyerInfo": {"BuyerEmail": f"{rng.randbytes(7).hex()}@marketplace.amazon.com"},
        "ShippingAddress": {"Name": name, "AddressLine1": line, "City": city,
                            "StateOrRegion": state, "PostalCode": zip_code, "CountryCode": "US",
                            "Phone": phone, "AddressType": "Residential"},
        "OrderItems": items,
    }


def _amazon_order_id(rng: random.Random, seq: int) -> str:
    middle = serial(rng, 3_159_000, seq, 7)
    return f"11{rng.randint(1, 4)}-{middle:07d}-{rng.randrange(10**7):07d}"


def _amazon_item(seq: int, j: int, item: Item, shipping: Decimal, promoted: bool,
                 tax: Decimal) -> dict[str, Any]:
    price = usd(item.sku) * item.quantity  # ItemPrice is the unit price times the quantity
    promotion = cents(price * Decimal("0.05")) if promoted else Decimal(0)
    return {
        "ASIN": asin(item.sku), "OrderItemId": str(62_145_839_200_000 + seq * 10 + j),
        "SellerSKU": item.sku.sku, "Title": english_title(item.sku),
        "QuantityOrdered": item.quantity, "QuantityShipped": 0,
        "ItemPrice": money(price), "ShippingPrice": money(shipping),
        "ItemTax": money(cents((price - promotion) * tax)),
        "ShippingTax": money(Decimal(0)), "ShippingDiscount": money(Decimal(0)),
        "PromotionDiscount": money(promotion),
        "PromotionIds": ["TQF Spring 5% off"] if promoted else [], "IsGift": "false",
        "ConditionId": "New", "ConditionSubtypeId": "New",
    }


def _amazon_total(items: Sequence[dict[str, Any]]) -> Decimal:
    def amount(key: str) -> Decimal:
        return sum((Decimal(item[key]["Amount"]) for item in items), Decimal(0))

    charged = ("ItemPrice", "ShippingPrice", "ItemTax", "ShippingTax")
    return sum(map(amount, charged), Decimal(0)) - amount("PromotionDiscount")


def pdd_price(sku: DemoSku) -> Decimal:
    """Pinduoduo's group-buy price: 10% under the list price, to the jiao."""
    return (sku.price_cny * Decimal("0.9")).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def english_title(sku: DemoSku) -> str:
    colour, size = variant(sku)
    title = _ENGLISH_TITLES.get(sku.title, sku.title)
    size_text = "One Size" if size == "均码" else size.replace("cm", " cm")
    return f"{title}, {_ENGLISH_COLOURS.get(colour, colour)}, {size_text}"


def asin(sku: DemoSku) -> str:
    """A stable, random-looking ASIN for a merchant SKU."""
    letters = random.Random(sku.sku).choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=8)
    return "B0" + "".join(letters)


def money(amount: Decimal) -> dict[str, str]:
    return {"CurrencyCode": "USD", "Amount": yuan(amount)}
