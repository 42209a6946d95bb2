from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from ingest.jd import SEARCH_STATES, Client, beijing, sign
from normalize.jd import STATUS

# Published vector: the sign test of kfx2007's JD Python SDK (`jd` package, test_comm.py).
PUBLISHED = {
    "v": "2.0",
    "method": "jingdong.innovation.product.write.createSkus",
    "app_key": "yourappkey",
    "access_token": "yourtoken",
    "360buy_param_json": '{"paramStrin":"abc"}',
    "timestamp": "2019-06-27 15:41:49",
}


def test_sign_matches_the_published_jos_example() -> None:
    assert sign(PUBLISHED, "yourappSecret") == "E79CD3D49918172CA907A4CB493D9361"


def test_sign_ignores_the_order_of_parameters_and_any_sign_already_present() -> None:
    shuffled = dict(reversed(list(PUBLISHED.items())))
    assert sign({**shuffled, "sign": "STALE"}, "yourappSecret") == sign(PUBLISHED, "yourappSecret")


def test_sign_changes_with_the_secret_and_with_every_value() -> None:
    reference = sign(PUBLISHED, "yourappSecret")
    assert sign(PUBLISHED, "otherSecret") != reference
    for key in PUBLISHED:
        assert sign({**PUBLISHED, key: PUBLISHED[key] + "x"}, "yourappSecret") != reference


def test_sign_is_uppercase_hex_of_md5() -> None:
    value = sign({"a": "1"}, "s")
    assert len(value) == 32
    assert value == value.upper()
    int(value, 16)


def test_times_are_written_as_naive_beijing_whatever_the_zone() -> None:
    assert beijing(datetime(2026, 3, 9, 16, 30, 5, tzinfo=UTC)) == "2026-03-10 00:30:05"
    new_york = timezone(timedelta(hours=-5))
    assert beijing(datetime(2026, 3, 9, 11, 30, 5, 999_999, tzinfo=new_york)) == (
        "2026-03-10 00:30:05")


def test_every_searched_state_is_one_the_mapper_understands() -> None:
    assert set(SEARCH_STATES) <= set(STATUS)
    assert {"WAIT_SELLER_STOCK_OUT", "WAIT_GOODS_RECEIVE_CONFIRM", "FINISHED_L",
            "TRADE_CANCELED", "LOCKED"} <= set(SEARCH_STATES)


def test_the_widest_window_fits_in_the_shortest_month() -> None:
    assert Client.max_window <= timedelta(days=28)
    assert Client.end_lag == timedelta(0)
    assert Client.channel == "jd"
