from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.push import Delivery, PushRequest, PushSecrets, Unauthorized
from ingest.wechat import signature, verify_echo, verify_push
from schemas.base import SHANGHAI
from schemas.errors import InvalidInput
from schemas.order import OrderStatus

TOKEN = "orderhub-push-token"
SECRETS = PushSecrets(secret=TOKEN)
SENT = 1773504341
NOW = datetime.fromtimestamp(SENT + 2, UTC)
NONCE = "1514711492"
ORDER_ID = 3705115058471208928  # above 2^53: a float would change it


def event(name: str = "channels_ec_order_pay", **info: Any) -> dict[str, Any]:
    return {"ToUserName": "gh_97417a04a28d", "FromUserName": "o9AgO5Kd5ggOC-bXrbNODIiE3bGY",
            "CreateTime": SENT, "MsgType": "event", "Event": name,
            "order_info": {"order_id": ORDER_ID, **info}}


def signed(body: bytes | dict[str, Any], *, timestamp: int = SENT, nonce: str = NONCE,
           method: str = "POST", **query: str) -> PushRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    params = {"timestamp": str(timestamp), "nonce": nonce,
              "signature": signature(TOKEN, str(timestamp), nonce), **query}
    return PushRequest(method=method, headers={"content-type": "application/json"},
                       query=params, body=raw)


def verified(body: bytes | dict[str, Any]) -> Delivery:
    return verify_push(signed(body), SECRETS, NOW)


def test_the_signature_matches_wechats_published_examples() -> None:
    # developers.weixin.qq.com message push docs: Token "AAAAA".
    assert signature("AAAAA", "1714036504", "1514711492") == (
        "f464b24fc39322e44b38aa78f5edd27bd1441696")
    assert signature("AAAAA", "1714037059", "486452656") == (
        "899cf89e464efb63f54ddac96b0a0a235f53aa78")


def test_a_pay_event_becomes_a_paid_status_change_at_the_event_time() -> None:
    delivery = verified(event())

    assert delivery.shop == "gh_97417a04a28d"
    assert delivery.response == b"success"
    assert delivery.fetch == []
    [change] = delivery.status_changes
    assert change.order_id == "WX3705115058471208928"
    assert change.status is OrderStatus.PAID
    assert change.at == datetime.fromtimestamp(SENT, UTC)
    assert change.at.utcoffset() == timedelta(hours=8)
    assert (change.source, change.reason) == ("wechat", "channels_ec_order_pay")


@pytest.mark.parametrize(("name", "status"), [
    ("channels_ec_order_wait_shipping", OrderStatus.PAID),
    ("channels_ec_order_deliver", OrderStatus.SHIPPED),
    ("channels_ec_order_confirm", OrderStatus.COMPLETED),
])
def test_status_events_map_to_canonical_statuses(name: str, status: OrderStatus) -> None:
    delivery = verified(event(name))

    assert [c.status for c in delivery.status_changes] == [status]
    assert delivery.fetch == []


def test_a_cancellation_is_a_status_change_and_a_fetch() -> None:
    delivery = verified(event("channels_ec_order_cancel", cancel_type=1))

    assert [c.status for c in delivery.status_changes] == [OrderStatus.CANCELLED]
    assert delivery.fetch == ["3705115058471208928"]


def test_a_cancellation_after_every_item_was_refunded_is_a_refund() -> None:
    delivery = verified(event("channels_ec_order_cancel", cancel_type=3))

    assert [c.status for c in delivery.status_changes] == [OrderStatus.REFUNDED]


@pytest.mark.parametrize("name", [
    "channels_ec_order_new", "channels_ec_order_settle", "channels_ec_order_ext_info_update",
    "channels_ec_order_something_new",
])
def test_events_without_a_status_ask_for_the_whole_order(name: str) -> None:
    delivery = verified(event(name))

    assert delivery.status_changes == []
    assert delivery.fetch == ["3705115058471208928"]


def test_an_order_id_sent_as_a_string_is_kept_exactly() -> None:
    body = event()
    body["order_info"]["order_id"] = "3705115058471208928"

    assert verified(body).status_changes[0].order_id == "WX3705115058471208928"


def test_a_redelivery_has_the_same_delivery_id_and_another_event_does_not() -> None:
    first = verified(event()).delivery_id
    again = verify_push(signed(event(), nonce="99"), SECRETS, NOW).delivery_id
    deliver = verified(event("channels_ec_order_deliver")).delivery_id

    assert first == again
    assert first.startswith("wechat:")
    assert deliver != first


def test_an_event_about_something_else_is_acknowledged_and_ignored() -> None:
    body = event("product_spu_listing")
    del body["order_info"]

    delivery = verified(body)

    assert (delivery.status_changes, delivery.fetch, delivery.response) == ([], [], b"success")


def test_a_forged_signature_is_refused() -> None:
    request = signed(event())
    forged = PushRequest(request.method, request.headers,
                         {**request.query, "signature": signature("guess", "1", "2")},
                         request.body)

    with pytest.raises(Unauthorized, match="signature"):
        verify_push(forged, SECRETS, NOW)


@pytest.mark.parametrize("field", ["timestamp", "nonce"])
def test_a_tampered_timestamp_or_nonce_breaks_the_signature(field: str) -> None:
    request = signed(event())
    value = str(SENT + 1) if field == "timestamp" else NONCE + "0"
    tampered = PushRequest(request.method, request.headers, {**request.query, field: value},
                           request.body)

    with pytest.raises(Unauthorized, match="signature"):
        verify_push(tampered, SECRETS, NOW)


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce"])
def test_a_push_missing_a_signed_parameter_is_refused(missing: str) -> None:
    request = signed(event())
    query = {k: v for k, v in request.query.items() if k != missing}

    with pytest.raises(Unauthorized):
        verify_push(PushRequest(request.method, request.headers, query, request.body), SECRETS,
                    NOW)


def test_a_push_signed_with_another_token_is_refused() -> None:
    with pytest.raises(Unauthorized):
        verify_push(signed(event()), PushSecrets(secret="another-token"), NOW)


def test_without_a_configured_token_nothing_is_accepted() -> None:
    with pytest.raises(Unauthorized, match="token"):
        verify_push(signed(event()), PushSecrets(secret=""), NOW)


@pytest.mark.parametrize("offset_s", [-301, 301])
def test_stale_and_future_timestamps_are_refused(offset_s: int) -> None:
    with pytest.raises(Unauthorized, match="timestamp"):
        verify_push(signed(event()), SECRETS, datetime.fromtimestamp(SENT + offset_s, UTC))


def test_the_age_limit_can_be_configured() -> None:
    later = datetime.fromtimestamp(SENT + 600, UTC)
    relaxed = PushSecrets(secret=TOKEN, options={"max_age_s": "900"})

    assert verify_push(signed(event()), relaxed, later).status_changes
    with pytest.raises(Unauthorized):
        verify_push(signed(event()), SECRETS, later)


def test_a_timestamp_that_is_not_unix_seconds_is_refused() -> None:
    request = signed(event())
    query = {**request.query, "timestamp": "2026-03-15T00:05:41"}

    with pytest.raises(Unauthorized, match="Unix seconds"):
        verify_push(PushRequest("POST", {}, query, request.body), SECRETS, NOW)


def test_the_url_check_answers_the_echostr() -> None:
    request = signed(b"", method="GET", echostr="4375120948345356249")

    assert verify_echo(request, SECRETS, NOW) == b"4375120948345356249"


def test_the_url_check_with_a_forged_signature_is_refused() -> None:
    request = signed(b"", method="GET", echostr="4375120948345356249")
    forged = PushRequest("GET", {}, {**request.query, "signature": "0" * 40}, b"")

    with pytest.raises(Unauthorized):
        verify_echo(forged, SECRETS, NOW)


def test_the_url_check_without_an_echostr_is_refused() -> None:
    with pytest.raises(InvalidInput, match="echostr"):
        verify_echo(signed(b"", method="GET"), SECRETS, NOW)


def test_a_signed_encrypted_push_is_refused_as_not_supported_yet() -> None:
    body = {"ToUserName": "gh_97417a04a28d", "Encrypt": "bXkgY2lwaGVydGV4dA=="}
    request = signed(body, encrypt_type="aes",
                     msg_signature=signature(TOKEN, str(SENT), NONCE, body["Encrypt"]))

    with pytest.raises(InvalidInput, match="not supported yet"):
        verify_push(request, SECRETS, NOW)


def test_an_encrypted_push_with_a_forged_msg_signature_is_unauthorized() -> None:
    body = {"ToUserName": "gh_97417a04a28d", "Encrypt": "bXkgY2lwaGVydGV4dA=="}
    request = signed(body, encrypt_type="aes",
                     msg_signature=signature(TOKEN, str(SENT), NONCE, "other ciphertext"))

    with pytest.raises(Unauthorized, match="msg_signature"):
        verify_push(request, SECRETS, NOW)


def test_an_encrypt_field_in_a_plaintext_push_is_refused_as_not_supported() -> None:
    with pytest.raises(InvalidInput, match="not supported yet"):
        verified({"ToUserName": "gh_97417a04a28d", "Encrypt": "bXkgY2lwaGVydGV4dA=="})


@pytest.mark.parametrize("body", [b'{"ToUserName": "gh_1", ', b"[1, 2]", b""])
def test_a_signed_body_that_is_not_a_json_object_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        verified(body)


def test_a_signed_xml_push_is_invalid_input_naming_the_format() -> None:
    body = b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName></xml>"

    with pytest.raises(InvalidInput, match="JSON"):
        verified(body)


def test_a_malformed_body_under_a_forged_signature_is_unauthorized_not_invalid() -> None:
    request = signed(b"not json")
    forged = PushRequest("POST", {}, {**request.query, "signature": "0" * 40}, request.body)

    with pytest.raises(Unauthorized):
        verify_push(forged, SECRETS, NOW)


@pytest.mark.parametrize(("change", "path"), [
    ({"CreateTime": "yesterday"}, "CreateTime"),
    ({"ToUserName": ""}, "ToUserName"),
    ({"order_info": {"order_id": "37051150584712089x"}}, "order_info.order_id"),
    ({"order_info": ["3705115058471208928"]}, "order_info"),
])
def test_a_signed_event_with_unusable_fields_names_the_field(
    change: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        verified({**event(), **change})

    assert refused.value.path == path


def test_event_times_are_carried_in_beijing_time() -> None:
    change = verified(event()).status_changes[0]

    assert change.at == datetime(2026, 3, 15, 0, 5, 41, tzinfo=SHANGHAI)
