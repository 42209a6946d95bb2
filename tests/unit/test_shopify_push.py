from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.push import Delivery, PushRequest, PushSecrets, Unauthorized
from ingest.shopify import signature, verify_push
from schemas.errors import ConfigurationError, InvalidInput

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shopify" / "orders_create.json"
ORDER = FIXTURE.read_bytes()
SECRET = "shpss_test_" + "s" * 24
SECRETS = PushSecrets(secret=SECRET)
NOW = datetime(2026, 1, 24, 4, 10, 20, tzinfo=UTC)
WEBHOOK_ID = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"


def push(body: bytes = ORDER, *, topic: str = "orders/create", secret: str = SECRET,
         triggered_at: str | None = "2026-01-24T04:10:18.877041743Z",
         headers: dict[str, str | None] | None = None) -> PushRequest:
    sent: dict[str, str | None] = {
        "x-shopify-hmac-sha256": signature(body, secret),
        "x-shopify-topic": topic,
        "x-shopify-shop-domain": "acme-cn.myshopify.com",
        "x-shopify-api-version": "2025-01",
        "x-shopify-webhook-id": WEBHOOK_ID,
        "x-shopify-event-id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "x-shopify-triggered-at": triggered_at,
    }
    sent.update(headers or {})
    return PushRequest("POST", {k: v for k, v in sent.items() if v is not None}, {}, body)


def test_the_signature_matches_a_published_example() -> None:
    # Known answer published in SQLPage's Shopify webhook test (tests/sql_test_files).
    body = b'{"id":1234567890,"email":"customer@example.com","total_price":"123.45"}'
    assert signature(body, "test-webhook-secret") == (
        "QNyObTlKbMx2qDlPF/ZOZcBqg5OgPg+2oky3zldc0Gw=")


def test_the_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    digest = hmac.new(SECRET.encode(), ORDER, hashlib.sha256).digest()
    assert signature(ORDER, SECRET) == base64.b64encode(digest).decode()


def test_a_signed_order_is_delivered_whole_and_untouched() -> None:
    delivery = verify_push(push(), SECRETS, NOW)
    assert delivery == Delivery(delivery_id=f"shopify:{WEBHOOK_ID}", shop="acme-cn.myshopify.com",
                                orders=[json.loads(ORDER)], response=b"")
    assert delivery.orders[0]["id"] == 820982911946154508  # exact beyond 2^53


@pytest.mark.parametrize("topic", ["orders/updated", "orders/paid", "orders/cancelled",
                                   "orders/fulfilled", "orders/partially_fulfilled"])
def test_every_order_topic_delivers_the_order(topic: str) -> None:
    assert verify_push(push(topic=topic), SECRETS, NOW).orders == [json.loads(ORDER)]


def test_a_redelivery_has_the_same_delivery_id() -> None:
    later = NOW + timedelta(hours=3, minutes=59)  # Shopify's last retry, same Triggered-At
    assert verify_push(push(), SECRETS, later) == verify_push(push(), SECRETS, NOW)


def test_a_forged_signature_is_unauthorized() -> None:
    with pytest.raises(Unauthorized) as caught:
        verify_push(push(secret="not-the-app-secret"), SECRETS, NOW)
    assert SECRET not in str(caught.value)


def test_a_body_changed_by_one_byte_is_unauthorized() -> None:
    request = push()
    tampered = ORDER.replace(b'"total_price": "267.58"', b'"total_price": "267.59"')
    assert tampered != ORDER
    with pytest.raises(Unauthorized):
        verify_push(PushRequest("POST", request.headers, {}, tampered), SECRETS, NOW)


@pytest.mark.parametrize("sent", [None, "", "not base64!", "ünïcode",
                                  signature(ORDER, SECRET)[:-4]])
def test_a_missing_or_unreadable_signature_is_unauthorized(sent: str | None) -> None:
    with pytest.raises(Unauthorized):
        verify_push(push(headers={"x-shopify-hmac-sha256": sent}), SECRETS, NOW)


def test_the_signature_is_checked_before_the_body_is_parsed() -> None:
    request = push(b"{not json")
    forged = PushRequest("POST", {**request.headers, "x-shopify-hmac-sha256":
                                  signature(b"{not json", "other")}, {}, request.body)
    with pytest.raises(Unauthorized):
        verify_push(forged, SECRETS, NOW)
    with pytest.raises(InvalidInput):
        verify_push(request, SECRETS, NOW)


def test_an_empty_secret_verifies_nothing() -> None:
    with pytest.raises(Unauthorized):
        verify_push(push(secret=""), PushSecrets(secret=""), NOW)


@pytest.mark.parametrize("age", [timedelta(hours=48, seconds=1), timedelta(days=2000)])
def test_a_delivery_triggered_beyond_the_retry_horizon_is_stale(age: timedelta) -> None:
    with pytest.raises(Unauthorized) as caught:
        verify_push(push(triggered_at=(NOW - age).isoformat()), SECRETS, NOW)
    assert "stale" in str(caught.value)


def test_a_retried_delivery_hours_old_is_still_accepted() -> None:
    sent = (NOW - timedelta(hours=4, minutes=30)).isoformat()
    assert verify_push(push(triggered_at=sent), SECRETS, NOW).orders


def test_the_max_age_can_be_tightened() -> None:
    tight = PushSecrets(secret=SECRET, options={"max_age_s": "3600"})
    sent = (NOW - timedelta(hours=2)).isoformat()
    with pytest.raises(Unauthorized):
        verify_push(push(triggered_at=sent), tight, NOW)
    with pytest.raises(ConfigurationError):
        verify_push(push(), PushSecrets(secret=SECRET, options={"max_age_s": "nan"}), NOW)


def test_a_delivery_from_the_future_beyond_clock_skew_is_unauthorized() -> None:
    ahead = push(triggered_at=(NOW + timedelta(minutes=6)).isoformat())
    with pytest.raises(Unauthorized):
        verify_push(ahead, SECRETS, NOW)
    skewed = push(triggered_at=(NOW + timedelta(minutes=1)).isoformat())
    assert verify_push(skewed, SECRETS, NOW).orders


@pytest.mark.parametrize("sent", ["yesterday", "2026-01-24T04:10:18", ""])
def test_an_unreadable_triggered_at_is_unauthorized(sent: str) -> None:
    with pytest.raises(Unauthorized):
        verify_push(push(triggered_at=sent), SECRETS, NOW)


def test_a_delivery_without_triggered_at_is_judged_by_its_signature() -> None:
    assert verify_push(push(triggered_at=None), SECRETS, NOW).orders == [json.loads(ORDER)]


@pytest.mark.parametrize("topic", ["products/update", "app/uninstalled", "orders/delete", ""])
def test_other_topics_are_acknowledged_and_produce_nothing(topic: str) -> None:
    delivery = verify_push(push(b'{"id": 820982911946154508}', topic=topic), SECRETS, NOW)
    assert delivery == Delivery(delivery_id=f"shopify:{WEBHOOK_ID}", shop="acme-cn.myshopify.com")


def test_an_order_edit_asks_for_the_whole_order() -> None:
    body = b'{"order_edit": {"id": 78912328, "order_id": 820982911946154508, "line_items": {}}}'
    delivery = verify_push(push(body, topic="orders/edited"), SECRETS, NOW)
    assert (delivery.orders, delivery.fetch) == ([], ["820982911946154508"])


def test_an_order_trimmed_by_include_fields_is_fetched_instead() -> None:
    body = b'{"id": 820982911946154508, "financial_status": "paid", "updated_at": "x"}'
    delivery = verify_push(push(body, topic="orders/updated"), SECRETS, NOW)
    assert (delivery.orders, delivery.fetch) == ([], ["820982911946154508"])


@pytest.mark.parametrize(("body", "topic"), [
    (b"{not json", "orders/create"),
    (b"\xff\xfe{}", "orders/create"),
    (b'[{"id": 1}]', "orders/create"),
    (b'{"name": "#1001"}', "orders/paid"),
    (b'{"id": -5, "financial_status": "paid"}', "orders/updated"),
    (b'{"order_edit": {"order_id": "82x"}}', "orders/edited"),
    (b'{"id": 1}', "orders/edited"),
])
def test_a_signed_body_that_is_not_the_topics_json_is_invalid_input(body: bytes, topic: str
                                                                     ) -> None:
    with pytest.raises(InvalidInput):
        verify_push(push(body, topic=topic), SECRETS, NOW)


@pytest.mark.parametrize("headers", [
    {"x-shopify-shop-domain": None},
    {"x-shopify-shop-domain": "evil.example.com"},
    {"x-shopify-shop-domain": "acme/../x.myshopify.com"},
    {"x-shopify-webhook-id": None},
    {"x-shopify-webhook-id": "has spaces"},
])
def test_a_signed_delivery_without_shop_domain_or_webhook_id_is_invalid_input(
    headers: dict[str, str | None],
) -> None:
    with pytest.raises(InvalidInput):
        verify_push(push(headers=headers), SECRETS, NOW)


def test_the_shop_domain_is_read_case_insensitively() -> None:
    request = push(headers={"x-shopify-shop-domain": "Acme-CN.myshopify.com"})
    delivery = verify_push(request, SECRETS, NOW)
    assert delivery.shop == "acme-cn.myshopify.com"
