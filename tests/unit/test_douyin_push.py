from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from ingest.douyin import verify_push
from ingest.push import Delivery, PushRequest, PushSecrets, Unauthorized
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import OrderStatus

KEY, SECRET = "7001234567890123456", "douyin-secret-for-tests"
SECRETS = PushSecrets(secret=SECRET, app_key=KEY)
NOW = datetime(2025, 12, 15, 10, 30, tzinfo=SHANGHAI)
EVENT = int((NOW - timedelta(minutes=2)).timestamp())
ORDER = 6930412883651765432  # beyond 2^53: a float would change it
SHOP = 4463798


def message(tag: str, msg_id: str = "7450000000000000001", /, **data: Any) -> dict[str, Any]:
    fields = {"p_id": ORDER, "s_ids": [ORDER + 1], "shop_id": SHOP, "order_status": 105,
              "order_type": 0, "biz": 2, "pay_time": EVENT, "update_time": EVENT,
              "create_time": EVENT, "complete_time": EVENT, "cancel_time": EVENT,
              "modify_time": EVENT, "apply_time": EVENT}
    return {"tag": tag, "msg_id": msg_id, "data": json.dumps({**fields, **data})}


def signed(body: bytes, **headers: str) -> PushRequest:
    sign = hashlib.md5(KEY.encode() + body + SECRET.encode()).hexdigest()
    return PushRequest("POST", {"event-sign": sign, "app-id": KEY, **headers}, {}, body)


def body_of(*messages: dict[str, Any]) -> bytes:
    return json.dumps(list(messages), separators=(",", ":")).encode()


def push(*messages: dict[str, Any], secrets: PushSecrets = SECRETS) -> Delivery:
    return verify_push(signed(body_of(*messages)), secrets, NOW)


def refused(request: PushRequest, secrets: PushSecrets = SECRETS) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        verify_push(request, secrets, NOW)
    return caught.value


def invalid(body: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        verify_push(signed(body), SECRETS, NOW)
    return caught.value


def test_a_paid_message_is_a_paid_status_change_at_its_pay_time_and_a_fetch() -> None:
    delivery = push(message("101", pay_time=EVENT - 30))
    [change] = delivery.status_changes
    assert (change.order_id, change.status, change.source, change.reason) == (
        f"DY{ORDER}", OrderStatus.PAID, "douyin", "101")
    assert change.at == datetime.fromtimestamp(EVENT - 30, SHANGHAI)
    assert delivery.fetch == [str(ORDER)]
    assert delivery.shop == str(SHOP)
    assert delivery.orders == []
    assert json.loads(delivery.response) == {"code": 0, "msg": "success"}
    assert delivery.content_type == "application/json"


@pytest.mark.parametrize(("tag", "status", "time_field"), [
    ("102", OrderStatus.SHIPPED, "update_time"),
    ("103", OrderStatus.COMPLETED, "complete_time"),
])
def test_shipped_and_completed_messages_are_status_changes_only(
    tag: str, status: OrderStatus, time_field: str
) -> None:
    delivery = push(message(tag, **{time_field: EVENT - 99}))
    assert [(c.status, c.at) for c in delivery.status_changes] == [
        (status, datetime.fromtimestamp(EVENT - 99, SHANGHAI))]
    assert delivery.fetch == []


def test_a_cancelled_message_is_a_cancellation_and_a_fetch_to_tell_refund_from_cancel() -> None:
    delivery = push(message("106", cancel_time=EVENT - 5))
    assert [(c.status, c.at) for c in delivery.status_changes] == [
        (OrderStatus.CANCELLED, datetime.fromtimestamp(EVENT - 5, SHANGHAI))]
    assert delivery.fetch == [str(ORDER)]


@pytest.mark.parametrize("tag", ["100", "105", "108", "109", "110", "200", "201"])
def test_messages_whose_status_cannot_be_told_ask_for_the_order_in_full(tag: str) -> None:
    delivery = push(message(tag))
    assert delivery.status_changes == []
    assert delivery.fetch == [str(ORDER)]


def test_a_string_p_id_is_read_the_same_as_a_number() -> None:
    assert push(message("100", p_id=str(ORDER))).fetch == [str(ORDER)]


def test_one_push_with_several_messages_gives_all_their_events_and_each_order_once() -> None:
    delivery = push(message("100", "1"), message("101", "2"), message("102", "3", p_id=ORDER + 9))
    assert [c.status for c in delivery.status_changes] == [OrderStatus.PAID, OrderStatus.SHIPPED]
    assert delivery.fetch == [str(ORDER)]


def test_a_redelivered_batch_has_the_same_delivery_id_whatever_the_order() -> None:
    first = push(message("100", "11"), message("101", "12"))
    again = push(message("101", "12"), message("100", "11"))
    other = push(message("100", "11"), message("101", "13"))
    expected = hashlib.sha256(b"11\n12").hexdigest()
    assert first.delivery_id == again.delivery_id == f"douyin:{expected}"
    assert other.delivery_id != first.delivery_id


def test_the_setup_test_message_is_acknowledged_with_nothing_to_do() -> None:
    delivery = push({"tag": "0", "msg_id": "0", "data": "test"})
    assert (delivery.status_changes, delivery.fetch, delivery.shop) == ([], [], "")
    assert json.loads(delivery.response) == {"code": 0, "msg": "success"}


def test_a_message_about_something_other_than_an_order_is_ignored() -> None:
    product = {"tag": "400", "msg_id": "9", "data": json.dumps({"product_id": 1, "shop_id": SHOP})}
    delivery = push(product)
    assert (delivery.status_changes, delivery.fetch) == ([], [])


def test_a_signature_made_with_another_secret_is_refused() -> None:
    body = body_of(message("101"))
    forged = hashlib.md5(KEY.encode() + body + b"guess").hexdigest()
    assert "event-sign" in str(refused(PushRequest("POST", {"event-sign": forged}, {}, body)))


def test_a_body_with_one_byte_changed_is_refused() -> None:
    request = signed(body_of(message("101")))
    tampered = request.body.replace(str(ORDER).encode(), str(ORDER + 1).encode())
    assert len(tampered) == len(request.body) and tampered != request.body
    refused(PushRequest("POST", request.headers, {}, tampered))


def test_a_push_without_event_sign_is_refused() -> None:
    request = signed(body_of(message("101")))
    refused(PushRequest("POST", {"app-id": KEY}, {}, request.body))


def test_an_uppercase_event_sign_is_the_same_signature() -> None:
    request = signed(body_of(message("101")))
    upper = {**request.headers, "event-sign": request.headers["event-sign"].upper()}
    assert verify_push(PushRequest("POST", upper, {}, request.body), SECRETS, NOW).fetch


def test_a_push_for_another_app_is_refused() -> None:
    refused(signed(body_of(message("101")), **{"app-id": "7009999999999999999"}))


def test_without_a_configured_secret_nothing_verifies() -> None:
    body = body_of(message("101"))
    unsigned = hashlib.md5(KEY.encode() + body).hexdigest()
    refused(PushRequest("POST", {"event-sign": unsigned}, {}, body), PushSecrets(app_key=KEY))


def test_a_push_whose_newest_event_is_over_a_week_old_is_refused_as_stale() -> None:
    week_ago = int((NOW - timedelta(days=8)).timestamp())
    old = {f: week_ago for f in ("pay_time", "update_time", "create_time", "apply_time")}
    assert "stale" in str(refused(signed(body_of(message("101", **old)))))


def test_a_redelivery_hours_later_is_still_accepted() -> None:
    hours_ago = int((NOW - timedelta(hours=20)).timestamp())
    assert push(message("101", pay_time=hours_ago, update_time=hours_ago)).status_changes


def test_max_age_s_narrows_what_counts_as_stale() -> None:
    strict = PushSecrets(secret=SECRET, app_key=KEY, options={"max_age_s": "60"})
    refused(signed(body_of(message("101"))), strict)


def test_signed_but_not_json_is_invalid_input() -> None:
    assert "JSON" in str(invalid(b'[{"tag":"101",'))


@pytest.mark.parametrize(("messages", "path"), [
    ([{"tag": "101", "msg_id": "1", "data": "{not json"}], "[0].data"),
    ([{"tag": "101", "data": "{}"}], "[0].msg_id"),
    ([{"tag": "x1", "msg_id": "1", "data": "{}"}], "[0].tag"),
    ([{"tag": "100", "msg_id": "1", "data": json.dumps({"p_id": 1.5e18})}], "[0].data.p_id"),
    (["101"], "[0]"),
])
def test_a_signed_message_that_cannot_be_read_names_the_offending_field(
    messages: list[Any], path: str
) -> None:
    assert invalid(body_of(*messages)).path == path


def test_a_signed_object_instead_of_an_array_is_invalid_input() -> None:
    invalid(json.dumps({"tag": "101"}).encode())


def test_one_push_carrying_two_shops_is_invalid_input_rather_than_misattributed() -> None:
    error = invalid(body_of(message("101", "1"), message("101", "2", shop_id=SHOP + 1)))
    assert str(SHOP) in str(error) and str(SHOP + 1) in str(error)
