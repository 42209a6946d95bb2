from __future__ import annotations

import hashlib

import pytest

from ingest.douyin import event_sign, param_json, sign
from schemas.errors import ConfigurationError

APP_KEY, SECRET, TIMESTAMP = "1234567890123456789", "contract-app-secret", "1667899926"
PARAMS = {"z": 1, "nested": {"汉": "<&", "a": True}, "a": [3, {"b": 2, "a": 1}]}
CANONICAL = '{"a":[3,{"a":1,"b":2}],"nested":{"a":true,"汉":"<&"},"z":1}'


def test_param_json_sorts_keys_at_every_level_without_spaces_and_keeps_chinese() -> None:
    assert param_json(PARAMS) == CANONICAL


def test_param_json_keeps_19_digit_ids_exact() -> None:
    assert param_json({"shop_order_id": 6930412883651765432}) == (
        '{"shop_order_id":6930412883651765432}')


def test_hmac_sha256_sign_matches_an_independent_implementations_vector() -> None:
    # The vector a separate public Douyin client publishes in its contract tests
    # (commerce.platforms.douyin `sign_request`); Douyin's own docs print no worked example.
    assert sign(APP_KEY, SECRET, "order.searchList", CANONICAL, TIMESTAMP) == (
        "cfb0c61c20926f758e13f4bd3d59a0de0e22f3c6059f1045cae36e6cea2bd417")


def test_md5_sign_hashes_the_secret_wrapped_parameter_string() -> None:
    text = (SECRET + "app_key" + APP_KEY + "method" + "order.orderDetail" + "param_json"
            + '{"shop_order_id":"6930412883651765432"}' + "timestamp" + TIMESTAMP + "v2" + SECRET)
    expected = hashlib.md5(text.encode()).hexdigest()
    assert sign(APP_KEY, SECRET, "order.orderDetail", '{"shop_order_id":"6930412883651765432"}',
                int(TIMESTAMP), sign_method="md5") == expected


def test_the_sign_changes_with_every_signed_part() -> None:
    base = sign(APP_KEY, SECRET, "order.searchList", CANONICAL, TIMESTAMP)
    assert sign(APP_KEY, SECRET, "order.orderDetail", CANONICAL, TIMESTAMP) != base
    assert sign(APP_KEY, SECRET, "order.searchList", CANONICAL, "1667899927") != base
    assert sign(APP_KEY, SECRET + "x", "order.searchList", CANONICAL, TIMESTAMP) != base
    assert sign(APP_KEY, SECRET, "order.searchList", CANONICAL.replace("3", "4"), TIMESTAMP) != base


def test_an_unknown_sign_method_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="hmac-sha256"):
        sign(APP_KEY, SECRET, "order.searchList", CANONICAL, TIMESTAMP, sign_method="sha1")


def test_event_sign_is_md5_of_app_key_body_and_secret_in_lowercase_hex() -> None:
    body = b'[{"tag":"101","msg_id":"1","data":"{}"}]'
    expected = hashlib.md5(b"7001234567890" + body + b"douyin-secret").hexdigest()
    assert event_sign("7001234567890", "douyin-secret", body) == expected == expected.lower()
