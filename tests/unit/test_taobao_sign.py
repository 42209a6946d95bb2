from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.pull import ChannelError, Throttled
from ingest.taobao import sign
from ingest.taobao_api import response_key, top_error, top_time
from schemas.errors import ConfigurationError, TransientError

# The worked example of TOP's API call protocol page (open.taobao.com, docId 101617).
DOC_EXAMPLE = {
    "method": "taobao.item.seller.get", "app_key": "12345678", "session": "test",
    "timestamp": "2016-01-01 12:00:00", "format": "json", "v": "2.0", "sign_method": "md5",
    "fields": "num_iid,title,nick,price,num", "num_iid": "11223344",
}
# The older example of the same page (secret "test"), quoted by TOP SDKs' tests.
OLD_DOC_EXAMPLE = {
    "method": "taobao.user.seller.get", "timestamp": "2013-05-06 13:52:03", "format": "xml",
    "app_key": "test", "v": "2.0", "fields": "nick", "sign_method": "md5", "session": "test",
}


def test_md5_signature_matches_tops_published_example() -> None:
    assert sign(DOC_EXAMPLE, "helloworld") == "66987CB115214E59E6EC978214934FB8"


def test_md5_signature_matches_tops_older_published_example() -> None:
    assert sign(OLD_DOC_EXAMPLE, "test", "md5") == "72CB4D809B375A54502C09360D879C64"


def test_hmac_signs_the_joined_pairs_with_hmac_md5() -> None:
    # RFC 2202 test case 1: key 0x0b * 16, data "Hi There" (here the pair "Hi" + " There").
    assert sign({"Hi": " There"}, "\x0b" * 16, "hmac") == "9294727A3638BB1C13F48EF8158BFC9D"


def test_hmac_sha256_signs_the_joined_pairs_with_hmac_sha256() -> None:
    # RFC 4231 test case 1.
    assert sign({"Hi": " There"}, "\x0b" * 20, "hmac-sha256") == (
        "B0344C61D8DB38535CA8AFCEAF0BF12B881DC200C9833DA726E9376C2E32CFF7")


def test_an_existing_sign_and_empty_values_are_left_out() -> None:
    padded = {**DOC_EXAMPLE, "sign": "WHATEVER", "buyer_nick": ""}
    assert sign(padded, "helloworld") == "66987CB115214E59E6EC978214934FB8"


def test_the_signature_does_not_depend_on_parameter_order_but_on_every_value() -> None:
    reordered = dict(reversed(list(DOC_EXAMPLE.items())))
    assert sign(reordered, "helloworld") == sign(DOC_EXAMPLE, "helloworld")
    assert sign({**DOC_EXAMPLE, "num_iid": "11223345"}, "helloworld") != sign(
        DOC_EXAMPLE, "helloworld")


def test_an_unknown_sign_method_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="sha1"):
        sign(DOC_EXAMPLE, "helloworld", "sha1")


def test_timestamps_are_naive_beijing_wall_time() -> None:
    assert top_time(datetime(2016, 1, 1, 4, 0, tzinfo=UTC)) == "2016-01-01 12:00:00"


def test_answers_are_read_under_the_api_name_without_taobao() -> None:
    assert response_key("taobao.trade.fullinfo.get") == "trade_fullinfo_get_response"
    assert response_key("taobao.tmc.messages.consume") == "tmc_messages_consume_response"


def test_app_call_limited_is_throttled_for_the_announced_ban() -> None:
    error = top_error("api", {"code": 7, "msg": "App Call Limited",
                              "sub_code": "accesscontrol.limited-by-api-access-count",
                              "sub_msg": "This ban will last for 71 more seconds"})
    assert isinstance(error, Throttled) and error.retry_after_s == 71.0


def test_platform_side_failures_are_transient() -> None:
    for body in ({"code": 15, "msg": "Remote service error",
                  "sub_code": "isp.trade-service-unavailable"},
                 {"code": 10, "msg": "Service currently unavailable"},
                 {"code": 15, "msg": "Remote service error"}):
        error = top_error("api", body)
        assert isinstance(error, TransientError) and not isinstance(error, Throttled), body


def test_caller_faults_are_channel_errors_with_tops_code() -> None:
    bad_parameter = top_error("api", {"code": 15, "msg": "Remote service error",
                                      "sub_code": "isv.invalid-parameter:end_modified"})
    assert isinstance(bad_parameter, ChannelError)
    assert bad_parameter.code == "isv.invalid-parameter:end_modified"
    for code in (25, 26, 27, 40, 41):
        error = top_error("api", {"code": code, "msg": "x"})
        assert isinstance(error, ChannelError) and error.code == str(code)
