from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from ingest.pull import ChannelError, Throttled
from notify.providers.aliyun_sms import (
    acs_headers,
    authorization,
    biz_id,
    canonical_query,
    canonical_request,
    percent_encode,
)
from notify.providers.merchant_webhook import check_status, signature, verify
from notify.providers.wechat_message import checked, keywords
from schemas.errors import TransientError

# Aliyun's published V3 example ("V3版本请求体&签名机制", help.aliyun.com/zh/sdk/product-overview/
# v3-request-structure-and-signature): ECS RunInstances signed with fixed date and nonce.
ECS_QUERY = {
    "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
    "RegionId": "cn-shanghai",
}
ECS_HEADERS = acs_headers(
    "ecs.cn-shanghai.aliyuncs.com",
    "RunInstances",
    "2014-05-26",
    datetime(2023, 10, 26, 10, 22, 32, tzinfo=UTC),
    "3156853299f313e23d1673dc12e1703d",
    b"",
)


def test_v3_signature_matches_aliyuns_published_worked_example() -> None:
    assert authorization(
        "YourAccessKeyId", "YourAccessKeySecret", "POST", ECS_QUERY, ECS_HEADERS, b""
    ) == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;"
        "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


def test_canonical_request_hash_matches_aliyuns_published_intermediate_value() -> None:
    canonical, names = canonical_request("POST", ECS_QUERY, ECS_HEADERS, b"")
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert names == (
        "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    )


def test_percent_encoding_follows_rfc3986_with_utf8_chinese() -> None:
    assert percent_encode(" a!*'()~+/") == "%20a%21%2A%27%28%29~%2B%2F"
    assert percent_encode("茶") == "%E8%8C%B6"


def test_canonical_query_sorts_by_name() -> None:
    assert canonical_query({"b": "2", "OutId": "x y", "A": "1"}) == "A=1&OutId=x%20y&b=2"


def test_send_sms_answer_ok_gives_the_biz_id() -> None:
    body = json.dumps(
        {"Code": "OK", "Message": "OK", "BizId": "9006197469364984^0", "RequestId": "F655A8D5"}
    ).encode()
    assert biz_id(200, body) == "9006197469364984^0"


@pytest.mark.parametrize("code", ["isv.BUSINESS_LIMIT_CONTROL", "Throttling.User"])
def test_send_sms_rate_limit_codes_are_throttled(code: str) -> None:
    with pytest.raises(Throttled):
        biz_id(200, json.dumps({"Code": code, "Message": "limit"}).encode())


@pytest.mark.parametrize("code", ["isv.MOBILE_NUMBER_ILLEGAL", "SignatureDoesNotMatch"])
def test_send_sms_refusals_carry_aliyuns_code(code: str) -> None:
    with pytest.raises(ChannelError) as refused:
        biz_id(400, json.dumps({"Code": code, "Message": "no"}).encode())
    assert refused.value.code == code


def test_send_sms_5xx_is_transient() -> None:
    with pytest.raises(TransientError):
        biz_id(503, b"<html>busy</html>")


def test_wechat_errcodes_map_to_throttled_transient_and_channel_errors() -> None:
    assert checked({"errcode": 0, "errmsg": "ok", "msgid": 1}, "t")["msgid"] == 1
    with pytest.raises(Throttled):
        checked({"errcode": 45011, "errmsg": "freq"}, "t")
    with pytest.raises(TransientError):
        checked({"errcode": -1, "errmsg": "busy"}, "t")
    with pytest.raises(ChannelError) as refused:
        checked({"errcode": 43101, "errmsg": "user refuse"}, "t")
    assert refused.value.code == "43101"


def test_wechat_keywords_wrap_each_value() -> None:
    assert keywords({"thing1": "已发货"}) == {"thing1": {"value": "已发货"}}


def test_webhook_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_verify_accepts_the_signature_and_refuses_anything_else() -> None:
    body = b'{"event":"allocated"}'
    assert verify("s3cret", body, signature("s3cret", body))
    assert not verify("other", body, signature("s3cret", body))
    assert not verify("s3cret", body + b" ", signature("s3cret", body))
    assert not verify("s3cret", body, None)
    assert not verify("s3cret", body, "sha256=00")


def test_webhook_status_mapping() -> None:
    check_status(204, None, b"")
    with pytest.raises(Throttled) as slow:
        check_status(429, "30", b"")
    assert slow.value.retry_after_s == 30.0
    with pytest.raises(TransientError):
        check_status(502, None, b"")
    with pytest.raises(ChannelError) as refused:
        check_status(410, None, b"gone")
    assert refused.value.code == "410"
