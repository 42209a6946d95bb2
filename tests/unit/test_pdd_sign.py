from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from ingest.pdd import frame_delivery, message_path, sign
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import OrderStatus

SHOP = "pdd-mall-889123"
SN = "251215-481803633911509"
BIG_ID = 9007199254740993  # 2^53 + 1: a float would make it ...992


def frame(topic: str, content: dict[str, Any] | str, **extra: Any) -> dict[str, Any]:
    body = content if isinstance(content, str) else json.dumps(content)
    return {"id": BIG_ID, "commandType": "Common", "time": 1765765269000,
            "sendTime": 1765765268123,
            "message": {"type": topic, "mallID": 889123, "content": body}, **extra}


def test_sign_matches_the_published_sdk_vector() -> None:
    # whalesky-labs/pdd-sdk-php tests/Unit/Md5SignerTest.php, values as strings as sent.
    params = {"client_id": "test-client", "data_type": "JSON", "logistics_id": "9",
              "order_sn": "240101-1", "order_state": "1", "timestamp": "1720000000",
              "type": "pdd.erp.order.sync", "version": "V1", "waybill_no": "SF123"}
    assert sign(params, "test-secret") == "CC0F30530BBAC3FD67608391D61E370C"


def test_sign_ignores_the_sign_parameter_empty_values_and_the_order_of_keys() -> None:
    params = {"type": "pdd.order.information.get", "client_id": "a", "order_sn": SN}
    reordered = dict(reversed(list(params.items())))
    assert sign(reordered | {"sign": "OLD", "empty": ""}, "s") == sign(params, "s")


def test_sign_changes_with_any_value_or_the_secret() -> None:
    params = {"type": "pdd.order.information.get", "client_id": "a", "order_sn": SN}
    assert sign(params | {"order_sn": "251215-481803633911508"}, "s") != sign(params, "s")
    assert sign(params, "t") != sign(params, "s")


def test_the_message_path_matches_the_sdk_reference_encoding() -> None:
    # whalesky-labs/pdd-sdk-php tests/Unit/MessageClientTest.php: base64 of the MD5 hex text.
    assert message_path("app", 1700000000000, "secret") == (
        "/message/app/1700000000000/OTgxODMwNDI2NWZiN2NiNzA2NzIxOTI0ZjJlMDMxMjE%3D")


def test_a_confirmed_trade_is_paid_and_fetched_under_its_exact_message_id() -> None:
    delivery = frame_delivery(SHOP, frame("pdd_trade_TradeConfirmed",
                                          {"mall_id": 889123, "tid": SN}))
    assert delivery.delivery_id == "pdd:msg:9007199254740993"
    assert delivery.ack == "9007199254740993"
    [change] = delivery.status_changes
    assert change.order_id == f"PDD{SN}"
    assert change.status is OrderStatus.PAID
    assert change.at == datetime(2025, 12, 15, 10, 21, 8, 123000, tzinfo=SHANGHAI)
    assert change.source == "pdd" and change.reason == "pdd_trade_TradeConfirmed"
    assert delivery.fetch == [SN]  # the first notice of the order


@pytest.mark.parametrize(("topic", "status"), [
    ("pdd_trade_TradeSellerShip", OrderStatus.SHIPPED),
    ("pdd_trade_TradeSuccess", OrderStatus.DELIVERED),
])
def test_shipping_and_receipt_are_status_changes_without_a_fetch(topic: str,
                                                                 status: OrderStatus) -> None:
    delivery = frame_delivery(SHOP, frame(topic, {"mall_id": 889123, "tid": SN}))
    assert [c.status for c in delivery.status_changes] == [status]
    assert delivery.fetch == []


@pytest.mark.parametrize("topic", [
    "pdd_trade_TradeLogisticsAddressChanged", "pdd_trade_TradeMemoModified",
    "pdd_trade_BuyerMemoModified", "pdd_trade_TradeRiskChanged", "pdd_refund_RefundCreated",
    "pdd_refund_RefundAgreeAgreement", "pdd_refund_RefundClosed", "pdd_trade_SomethingNew",
])
def test_changes_that_name_no_status_fetch_the_order(topic: str) -> None:
    content = {"mall_id": 889123, "tid": SN, "refund_fee": 1990, "bill_type": 1,
               "modified": 1765765268000, "refund_id": 7381745730, "operation": 1000}
    delivery = frame_delivery(SHOP, frame(topic, content))
    assert delivery.status_changes == []
    assert delivery.fetch == [SN]
    assert delivery.ack == str(BIG_ID)


def test_a_refund_of_the_whole_order_in_fen_is_refunded() -> None:
    content = {"mall_id": 889123, "tid": SN, "refund_fee": 5990, "order_amount": 5990}
    delivery = frame_delivery(SHOP, frame("pdd_refund_RefundSuccess", content))
    assert [c.status for c in delivery.status_changes] == [OrderStatus.REFUNDED]
    assert delivery.fetch == []


@pytest.mark.parametrize("content", [
    {"refund_fee": 1000, "order_amount": 5990},  # part of the order
    {"refund_fee": 5990},  # nothing to compare with
])
def test_a_partial_or_unprovable_refund_is_fetched_not_refunded(content: dict[str, Any]
                                                                ) -> None:
    delivery = frame_delivery(SHOP, frame("pdd_refund_RefundSuccess", {"tid": SN, **content}))
    assert delivery.status_changes == []
    assert delivery.fetch == [SN]


def test_a_refund_amount_in_yuan_is_refused_as_not_fen() -> None:
    content = {"tid": SN, "refund_fee": 59.9, "order_amount": 59.9}
    with pytest.raises(InvalidInput) as caught:
        frame_delivery(SHOP, frame("pdd_refund_RefundSuccess", content))
    assert caught.value.path == "message.content.refund_fee"


def test_a_message_about_goods_is_acknowledged_and_asks_nothing() -> None:
    delivery = frame_delivery(SHOP, frame("pdd_goods_GoodsOnShelf", {"goods_id": 1}))
    assert (delivery.status_changes, delivery.fetch, delivery.orders) == ([], [], [])
    assert delivery.ack == str(BIG_ID)


def test_heartbeats_and_acks_are_empty_and_never_acknowledged() -> None:
    for command in ("HeartBeat", "Ack"):
        delivery = frame_delivery(SHOP, {"commandType": command, "time": 1765765268000})
        assert delivery.ack is None
        assert (delivery.status_changes, delivery.fetch) == ([], [])


def test_an_id_sent_as_digits_and_a_frame_with_only_time_are_read_exactly() -> None:
    raw = frame("pdd_trade_TradeSellerShip", {"tid": SN}) | {"id": "9223372036854775807"}
    del raw["sendTime"]
    delivery = frame_delivery(SHOP, raw)
    assert delivery.delivery_id == "pdd:msg:9223372036854775807"
    assert delivery.status_changes[0].at == datetime(2025, 12, 15, 10, 21, 9, tzinfo=SHANGHAI)


def test_json_parsing_keeps_a_big_frame_id_exact() -> None:
    text = json.dumps(frame("pdd_trade_TradeSellerShip", {"tid": SN}))
    assert frame_delivery(SHOP, json.loads(text)).ack == "9007199254740993"


@pytest.mark.parametrize(("broken", "path"), [
    (frame("pdd_trade_TradeConfirmed", "{not json"), "message.content"),
    (frame("pdd_trade_TradeConfirmed", {"mall_id": 889123}), "message.content.tid"),
    (frame("pdd_trade_TradeConfirmed", {"tid": 251215481803633911509}), "message.content.tid"),
    (frame("pdd_trade_TradeConfirmed", {"tid": SN, "mall_id": 1}), "message.content.mall_id"),
    (frame("pdd_trade_TradeConfirmed", {"tid": SN}) | {"id": 1.5}, "id"),
    ({"commandType": "Common", "id": 1, "time": 1765765268000}, "message"),
    ({"commandType": "Common", "id": 1, "message": {}}, "time"),
    (frame("pdd_trade_TradeConfirmed", {"tid": SN}) | {"sendTime": -1}, "sendTime"),
])
def test_a_malformed_frame_is_invalid_input_naming_the_field(broken: dict[str, Any],
                                                             path: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        frame_delivery(SHOP, broken)
    assert caught.value.path == path
