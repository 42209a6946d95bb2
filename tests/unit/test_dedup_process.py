from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup.process import (
    Fingerprint,
    Suspect,
    classify,
    decide,
    delivery_mark,
    fingerprint,
    lock_id,
    matched_fields,
    name_mark,
    phone_tail,
    stored_digest,
)
from normalize import douyin, pdd
from normalize.rates import RateTable
from schemas.base import SHANGHAI
from schemas.order import Order, OrderLine, OrderStatus
from tests.builders import one_purchase

RATES = RateTable.from_mapping({})
SHOP = "shop-1"
WINDOW = timedelta(seconds=180)  # DedupSettings.window_s default
EXACT = Decimal(0)  # DedupSettings.amount_tolerance_cny default
PAID = datetime(2026, 11, 11, 0, 30, 5, tzinfo=SHANGHAI)
SECOND = timedelta(seconds=1)
PDD_CIPHER = "$Qm9hZ2Jp3wTn$AgAAAAOq7fYCBlp0mwD7kP2xVqL0cN8sYt4RuJm6hE1=$0$$"
PDD_NAME_CIPHER = "~AgAAAAOq7fYCBVp0mwCXb2Fw9QkLm4n1TzRyE0dVuH8=~Rf6mT2pa~0~~"


def purchase(channel: str, n: int, paid_at: datetime = PAID, **kw: Any) -> Order:
    """The one_purchase fixture mapped by its channel's mapper; `n` makes the id."""
    if channel == "pdd":
        return pdd.map_order(one_purchase("pdd", order_id=f"261111-{n:06d}", paid_at=paid_at,
                                          **kw), shop=SHOP, rates=RATES)
    return douyin.map_order(one_purchase("douyin", order_id=f"6930{n:012d}", paid_at=paid_at,
                                         **kw), shop=SHOP, rates=RATES)


def with_recipient(order: Order, **changes: Any) -> Order:
    assert order.recipient is not None
    return order.model_copy(update={"recipient": order.recipient.model_copy(update=changes)})


def fp(order: Order) -> Fingerprint:
    found = fingerprint(order)
    assert found is not None
    return found


def match(a: Order, b: Order, tolerance: Decimal = EXACT) -> tuple[str, ...] | None:
    return matched_fields(fp(a), fp(b), WINDOW, tolerance)


def held_by_stage(arrivals: Sequence[Order], window: timedelta = WINDOW,
                  tolerance: Decimal = EXACT) -> dict[str, str]:
    """dedup/agent.py in miniature: held order id -> duplicate_of, after every arrival."""
    pool: dict[str, Fingerprint] = {}
    held: dict[str, str] = {}
    for order in arrivals:
        new = fingerprint(order)
        if new is None:
            continue
        others = [f for i, f in pool.items() if i != new.order_id]
        decision = decide(new, others, frozenset(held), window, tolerance)
        for earlier in decision.hold_earlier_arrivals:
            held[earlier.order_id] = earlier.duplicate_of
        if decision.hold_new is not None:
            held[decision.hold_new.order_id] = decision.hold_new.duplicate_of
        pool[new.order_id] = new
    return held


# -- classify --------------------------------------------------------------------------------


def test_the_first_version_of_an_id_is_unique() -> None:
    assert classify(None, None, "digest-1", "d1") == "unique"


def test_a_replay_of_the_first_delivery_is_unique_again_so_downstream_stays_idempotent() -> None:
    assert classify("digest-1", "d1", "digest-1", "d1") == "unique"


def test_another_delivery_of_the_same_version_is_a_duplicate() -> None:
    assert classify("digest-1", "d1", "digest-1", "d2") == "duplicate"


@pytest.mark.parametrize("delivery", ["d1", "d2"])
def test_a_different_version_is_an_update_whichever_delivery_brings_it(delivery: str) -> None:
    assert classify("digest-1", "d1", "digest-2", delivery) == "update"


# -- fingerprint: the key --------------------------------------------------------------------


def test_the_same_purchase_from_pdd_and_douyin_has_the_same_key() -> None:
    a, b = fp(purchase("pdd", 1)), fp(purchase("douyin", 1))
    assert a.order_id != b.order_id
    assert a.key == b.key
    assert (a.paid_cny, a.channel, b.channel) == (Decimal("154.70"), "pdd", "douyin")


def test_line_order_does_not_change_the_key() -> None:
    order = purchase("pdd", 1)
    reversed_lines = order.model_copy(update={"lines": order.lines[::-1]})
    assert fp(reversed_lines).key == fp(order).key


def test_one_sku_split_over_two_lines_has_the_key_of_one_line() -> None:
    order = purchase("douyin", 1)
    mug, tea = order.lines
    assert (mug.sku, mug.quantity) == ("DY-MUG-350-BLU", 2)
    half = mug.model_copy(update={"quantity": 1, "line_total": mug.unit_price})
    split = order.model_copy(update={"lines": (half, tea, half)})
    assert fp(split).key == fp(order).key
    assert match(split, purchase("pdd", 2)) is not None


def test_a_different_quantity_changes_the_key() -> None:
    order = purchase("pdd", 1)
    mug, tea = order.lines
    more = order.model_copy(update={"lines": (mug.model_copy(update={"quantity": 3}), tea)})
    assert fp(more).key != fp(order).key
    assert match(more, purchase("douyin", 1)) is None


def test_moving_a_unit_from_one_sku_to_another_changes_the_key() -> None:
    order = purchase("pdd", 1)
    mug, tea = order.lines
    moved = order.model_copy(update={"lines": (mug.model_copy(update={"quantity": 1}),
                                               tea.model_copy(update={"quantity": 2}))})
    assert fp(moved).key != fp(order).key


def test_a_different_sku_changes_the_key() -> None:
    other = purchase("pdd", 1, skus=(("DY-MUG-350-RED", 2, "54.90"), ("TEA-GIFT-01", 1, "44.90")))
    assert fp(other).paid_cny == fp(purchase("pdd", 2)).paid_cny
    assert match(other, purchase("pdd", 2)) is None


def test_a_line_without_a_merchant_sku_is_keyed_by_the_channel_sku_id() -> None:
    order = purchase("pdd", 1)
    mug, tea = order.lines
    bare = OrderLine(sku=None, channel_sku_id="998877", quantity=1, unit_price=Decimal(1),
                     line_total=Decimal(1))
    a = order.model_copy(update={"lines": (mug, tea, bare)})
    b = order.model_copy(update={"lines": (mug, tea, bare.model_copy(
        update={"channel_sku_id": "112233"}))})
    assert fp(a).key != fp(b).key != fp(order).key


@pytest.mark.parametrize("change", [{"city": "南京市"}, {"province": "浙江省"}, {"country": "HK"}])
def test_a_different_region_changes_the_key(change: dict[str, str]) -> None:
    moved = with_recipient(purchase("douyin", 1), **change)
    assert fp(moved).key != fp(purchase("douyin", 1)).key
    assert match(moved, purchase("pdd", 1)) is None


def test_the_same_region_with_a_different_street_address_keeps_the_key() -> None:
    moved = with_recipient(purchase("douyin", 1), district="吴中区", address="plain street 1")
    assert fp(moved).key == fp(purchase("pdd", 1)).key


@pytest.mark.parametrize("status", [OrderStatus.CANCELLED, OrderStatus.REFUNDED,
                                    OrderStatus.DUPLICATE])
def test_an_order_that_can_no_longer_ship_has_no_fingerprint(status: OrderStatus) -> None:
    assert fingerprint(purchase("pdd", 1).model_copy(update={"status": status})) is None


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.PENDING_PAYMENT,
                                    OrderStatus.REVIEW_HOLD, OrderStatus.ALLOCATED])
def test_an_order_that_may_still_ship_has_a_fingerprint(status: OrderStatus) -> None:
    assert fingerprint(purchase("pdd", 1).model_copy(update={"status": status})) is not None


def test_an_order_without_a_recipient_has_no_fingerprint() -> None:
    assert fingerprint(purchase("douyin", 1).model_copy(update={"recipient": None})) is None


@pytest.mark.parametrize("blank", [None, ""])
def test_an_order_without_province_or_city_has_no_fingerprint(blank: str | None) -> None:
    assert fingerprint(with_recipient(purchase("pdd", 1), province=blank, city=blank)) is None


def test_a_city_alone_is_enough_of_a_region() -> None:
    assert fingerprint(with_recipient(purchase("pdd", 1), province=None)) is not None


# -- fingerprint: event time -----------------------------------------------------------------


def test_utc_unix_seconds_and_naive_beijing_strings_give_the_same_event_time() -> None:
    paid_utc = datetime(2026, 11, 10, 16, 30, 5, tzinfo=UTC)  # 00:30:05 in Beijing
    pdd_raw = one_purchase("pdd", order_id="261111-000001", paid_at=paid_utc)
    douyin_raw = one_purchase("douyin", order_id="6930000000000001", paid_at=paid_utc)
    assert pdd_raw["pay_time"] == "2026-11-11 00:30:05"
    assert douyin_raw["pay_time"] == 1794328205
    a = fp(pdd.map_order(pdd_raw, shop=SHOP, rates=RATES))
    b = fp(douyin.map_order(douyin_raw, shop=SHOP, rates=RATES))
    assert a.event_at == b.event_at == paid_utc
    assert matched_fields(a, b, WINDOW, EXACT) == ("region", "skus", "paid_cny")
    # equal event times: the id decides, the same way whichever arrives first
    assert decide(a, [b], frozenset(), WINDOW, EXACT).hold_new == Suspect(
        a.order_id, b.order_id, ("region", "skus", "paid_cny"),
        f"same region, skus, paid_cny as {b.order_id} (douyin), 0 s apart")
    assert [s.order_id for s in decide(b, [a], frozenset(), WINDOW, EXACT)
            .hold_earlier_arrivals] == [a.order_id]


def test_the_event_time_is_paid_at_not_created_at() -> None:
    order = purchase("douyin", 1)
    assert order.created_at == PAID - timedelta(seconds=20)
    assert fp(order).event_at == PAID


def test_an_unpaid_order_falls_back_to_created_at() -> None:
    order = purchase("douyin", 1).model_copy(update={"paid_at": None})
    assert fp(order).event_at == PAID - timedelta(seconds=20)


# -- matched_fields: amount, phone tail, name mark -------------------------------------------


def with_paid_cny(order: Order, delta: str) -> Order:
    return order.model_copy(update={"paid_cny": order.paid_cny + Decimal(delta)})


def test_the_amount_must_be_exact_by_default() -> None:
    assert match(purchase("pdd", 1), with_paid_cny(purchase("douyin", 1), "0.01")) is None
    assert match(purchase("pdd", 1), with_paid_cny(purchase("douyin", 1), "-0.01")) is None


def test_amounts_within_the_tolerance_match_and_beyond_it_do_not() -> None:
    a = purchase("pdd", 1)
    assert match(a, with_paid_cny(purchase("douyin", 1), "0.50"), Decimal("0.50")) is not None
    assert match(a, with_paid_cny(purchase("douyin", 1), "-0.50"), Decimal("0.50")) is not None
    assert match(a, with_paid_cny(purchase("douyin", 1), "0.51"), Decimal("0.50")) is None
    assert match(a, with_paid_cny(purchase("douyin", 1), "-0.51"), Decimal("0.50")) is None


@pytest.mark.parametrize(("phone", "tail"), [
    ("138****6612", "6612"),
    ("13800006612", "6612"),
    ("+86 138****6612", "6612"),
    (" 13800006612 ", "6612"),
    ("****612", "612"),
    ("138****", None),
    ("$$abc$$", None),
    (PDD_CIPHER, None),
    ("~AgAAAAOq7fYCBlp0~1234~", None),
    ("$Qm9hZ2Jp3wTn1234", None),  # ciphertext is told by its prefix, not by how it ends
    ("##V2FuZ0Zh#1##", None),
    ("", None),
    (None, None),
])
def test_the_phone_tail_is_the_visible_trailing_digits(phone: str | None, tail: str | None
                                                       ) -> None:
    assert phone_tail(phone) == tail


@pytest.mark.parametrize(("name", "mark"), [
    ("陈*", "陈"), ("陈**", "陈"), ("陈小明", "陈"), (" 王*", "王"), ("*明", None),
    (PDD_NAME_CIPHER, None), ("##V2Fu#1##", None), ("$$abc$$", None), ("", None), (None, None),
])
def test_the_name_mark_is_the_first_visible_character(name: str | None, mark: str | None
                                                      ) -> None:
    assert name_mark(name) == mark


def test_a_masked_and_a_plain_phone_with_the_same_tail_match() -> None:
    a = with_recipient(purchase("pdd", 1), phone="138****6612")
    b = with_recipient(purchase("douyin", 1), phone="13800006612")
    assert match(a, b) == ("region", "skus", "paid_cny", "phone_tail")
    assert match(b, a) == ("region", "skus", "paid_cny", "phone_tail")


def test_a_shorter_visible_tail_matches_the_end_of_a_longer_one() -> None:
    a = with_recipient(purchase("pdd", 1), phone="****612")
    assert match(a, with_recipient(purchase("douyin", 1), phone="13800006612")) is not None
    assert match(a, with_recipient(purchase("douyin", 1), phone="13800006613")) is None


def test_different_phone_tails_do_not_match() -> None:
    a = with_recipient(purchase("pdd", 1), phone="138****6612")
    b = with_recipient(purchase("douyin", 1), phone="13800007721")
    assert match(a, b) is None
    assert match(b, a) is None


@pytest.mark.parametrize("cipher", ["$$abc$$", PDD_CIPHER, "~AgAAAA~1234~"])
def test_a_ciphertext_phone_is_not_compared(cipher: str) -> None:
    a = with_recipient(purchase("pdd", 1), phone=cipher)
    b = with_recipient(purchase("douyin", 1), phone="13800006612")
    assert match(a, b) == ("region", "skus", "paid_cny")


def test_masked_names_with_the_same_first_character_match() -> None:
    a = with_recipient(purchase("pdd", 1), name="陈*")
    b = with_recipient(purchase("douyin", 1), name="陈**")
    assert match(a, b) == ("region", "skus", "paid_cny", "name_mark")


def test_names_with_different_first_characters_do_not_match() -> None:
    a = with_recipient(purchase("pdd", 1), name="陈*")
    assert match(a, with_recipient(purchase("douyin", 1), name="王*")) is None


def test_a_ciphertext_name_is_not_compared() -> None:
    a = with_recipient(purchase("pdd", 1), name="陈*")
    assert match(a, with_recipient(purchase("douyin", 1), name=PDD_NAME_CIPHER)) == (
        "region", "skus", "paid_cny")


def test_both_phone_tail_and_name_mark_are_listed_when_both_are_visible() -> None:
    a = with_recipient(purchase("pdd", 1), name="陈*", phone="138****6612")
    b = with_recipient(purchase("douyin", 1), name="陈**", phone="13800006612")
    assert match(a, b) == ("region", "skus", "paid_cny", "phone_tail", "name_mark")
    assert match(a, with_recipient(b, name="王**")) is None


def test_an_order_never_matches_itself() -> None:
    a = fp(purchase("pdd", 1))
    assert matched_fields(a, a, WINDOW, EXACT) is None
    assert decide(a, [a], frozenset(), WINDOW, EXACT) == decide(a, [], frozenset(), WINDOW,
                                                                EXACT)


# -- the window ------------------------------------------------------------------------------


@pytest.mark.parametrize("sign", [1, -1])
def test_event_times_exactly_the_window_apart_match(sign: int) -> None:
    a, b = purchase("pdd", 1), purchase("douyin", 1, paid_at=PAID + sign * WINDOW)
    assert match(a, b) is not None
    assert match(b, a) is not None


@pytest.mark.parametrize("sign", [1, -1])
def test_event_times_a_second_beyond_the_window_do_not_match(sign: int) -> None:
    a, b = purchase("pdd", 1), purchase("douyin", 1, paid_at=PAID + sign * (WINDOW + SECOND))
    assert match(a, b) is None
    assert match(b, a) is None
    assert held_by_stage([a, b]) == held_by_stage([b, a]) == {}


@pytest.mark.parametrize("gap", [SECOND, WINDOW])
def test_the_later_in_event_time_is_held_whichever_arrives_first(gap: timedelta) -> None:
    early, late = purchase("douyin", 1), purchase("pdd", 1, paid_at=PAID + gap)
    assert held_by_stage([early, late]) == {late.id: early.id}
    assert held_by_stage([late, early]) == {late.id: early.id}


def test_a_later_arrival_later_in_event_time_is_held_as_the_newcomer() -> None:
    early, late = fp(purchase("pdd", 1)), fp(purchase("douyin", 1, paid_at=PAID + 60 * SECOND))
    decision = decide(late, [early], frozenset(), WINDOW, EXACT)
    assert decision.hold_earlier_arrivals == ()
    assert decision.hold_new is not None
    assert (decision.hold_new.order_id, decision.hold_new.duplicate_of) == (
        late.order_id, early.order_id)
    assert decision.hold_new.reason == (
        f"same region, skus, paid_cny as {early.order_id} (pdd), 60 s apart")


def test_an_earlier_order_arriving_late_holds_the_one_that_went_on() -> None:
    early, late = fp(purchase("pdd", 1)), fp(purchase("douyin", 1, paid_at=PAID + 60 * SECOND))
    decision = decide(early, [late], frozenset(), WINDOW, EXACT)
    assert decision.hold_new is None
    assert [(s.order_id, s.duplicate_of) for s in decision.hold_earlier_arrivals] == [
        (late.order_id, early.order_id)]


def test_an_order_already_in_review_is_not_held_again() -> None:
    early, late = fp(purchase("pdd", 1)), fp(purchase("douyin", 1, paid_at=PAID + 60 * SECOND))
    decision = decide(early, [late], frozenset({late.order_id}), WINDOW, EXACT)
    assert decision.hold_new is None
    assert decision.hold_earlier_arrivals == ()


def test_the_newcomer_is_held_as_a_duplicate_of_the_earliest_match() -> None:
    first = fp(purchase("pdd", 1, paid_at=PAID - 30 * SECOND))
    second = fp(purchase("douyin", 2, paid_at=PAID - 10 * SECOND))
    new = fp(purchase("pdd", 3))
    decision = decide(new, [second, first], frozenset({second.order_id}), WINDOW, EXACT)
    assert decision.hold_new is not None
    assert decision.hold_new.duplicate_of == first.order_id


def test_an_earliest_newcomer_holds_every_later_one_that_went_on_in_event_order() -> None:
    new = fp(purchase("pdd", 1))
    later = [fp(purchase("douyin", n, paid_at=PAID + n * SECOND)) for n in (3, 1, 2)]
    decision = decide(new, later, frozenset(), WINDOW, EXACT)
    assert decision.hold_new is None
    assert [(s.order_id, s.duplicate_of) for s in decision.hold_earlier_arrivals] == [
        (later[1].order_id, new.order_id), (later[2].order_id, new.order_id),
        (later[0].order_id, new.order_id)]


# -- the stage over arrival orders and clock offsets -----------------------------------------


HALF = int(WINDOW.total_seconds()) // 2
offsets = st.one_of(st.sampled_from([-HALF, 0, HALF]), st.integers(-HALF, HALF))
OTHER_KINDS = ("sku", "city", "far_before", "far_after")


@st.composite
def reports(draw: st.DrawFn, spread: st.SearchStrategy[int] = offsets
            ) -> tuple[list[Order], list[Order]]:
    """One purchase reported 2-5 times (by PDD or Douyin, clocks offset), and unrelated orders."""
    base = PAID + timedelta(seconds=draw(st.integers(0, 86_400)))
    group = [purchase(draw(st.sampled_from(["pdd", "douyin"])), n,
                      paid_at=base + timedelta(seconds=draw(spread)))
             for n in range(draw(st.integers(2, 5)))]
    others = []
    for n, kind in enumerate(draw(st.lists(st.sampled_from(OTHER_KINDS), max_size=3)), start=100):
        channel = draw(st.sampled_from(["pdd", "douyin"]))
        far = (2 + 2 * n) * WINDOW + SECOND  # beyond the window of the group and of each other
        if kind == "sku":
            others.append(purchase(channel, n, paid_at=base, skus=((f"OTHER-{n}", 1, "9.90"),)))
        elif kind == "city":
            others.append(purchase(channel, n, paid_at=base, city=f"城市{n}"))
        else:
            sign = 1 if kind == "far_after" else -1
            others.append(purchase(channel, n, paid_at=base + sign * far))
    return group, others


def rank(order: Order) -> tuple[datetime, str]:
    return fp(order).rank


def event_gap(a: Order, b: Order) -> timedelta:
    return abs(fp(a).event_at - fp(b).event_at)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports(), st.data())
def test_of_one_purchase_only_the_earliest_report_goes_on_whatever_the_arrival_order(
    orders: tuple[list[Order], list[Order]], data: st.DataObject,
) -> None:
    group, others = orders
    ids = {o.id for o in group}
    earliest = min(group, key=rank)
    arrivals = data.draw(st.permutations(group + others), label="arrivals")
    held = held_by_stage(arrivals)
    assert set(held) == ids - {earliest.id}
    for order_id, duplicate_of in held.items():
        by_id = {o.id: o for o in group}
        assert duplicate_of in ids
        assert rank(by_id[duplicate_of]) < rank(by_id[order_id])
    for other in others:
        assert other.id not in held
        assert other.id not in held.values()
    for arrival_order in (sorted(arrivals, key=rank), sorted(arrivals, key=rank, reverse=True),
                          data.draw(st.permutations(arrivals), label="again")):
        assert set(held_by_stage(arrival_order)) == set(held)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports(spread=st.integers(-3 * HALF, 3 * HALF)), st.data())
def test_reports_spread_wider_than_the_window_relate_only_pairwise_within_it(
    orders: tuple[list[Order], list[Order]], data: st.DataObject,
) -> None:
    group, others = orders
    everyone = {o.id: o for o in group + others}
    held = held_by_stage(data.draw(st.permutations(group + others), label="arrivals"))
    for order_id, duplicate_of in held.items():
        order, first = everyone[order_id], everyone[duplicate_of]
        assert event_gap(order, first) <= WINDOW
        assert rank(first) < rank(order)
        assert fp(first).key == fp(order).key
    for order in group + others:
        earlier_within = [o for o in group + others if rank(o) < rank(order)
                          and match(o, order) is not None]
        if not earlier_within:
            assert order.id not in held
    going_on = [o for o in group + others if o.id not in held]
    assert all(match(a, b) is None for a in going_on for b in going_on)


# -- what dedup stores: compact binary values ------------------------------------------------


def test_the_key_is_the_first_128_bits_of_the_sha256_and_locks_on_its_first_64() -> None:
    key = fp(purchase("pdd", 1)).key
    assert isinstance(key, bytes) and len(key) == 16
    assert lock_id(key) == int.from_bytes(key[:8], "big", signed=True)
    assert -(2**63) <= lock_id(key) < 2**63


def test_stored_digests_and_delivery_marks_keep_classify_s_verdicts() -> None:
    v1, v2 = "ab" * 32, "cd" * 32
    assert len(stored_digest(v1)) == 16 and stored_digest(v1) == bytes.fromhex(v1)[:16]
    assert len(delivery_mark("webhook:1")) == 8
    first = (stored_digest(v1), delivery_mark("webhook:1"))
    assert classify(*first, stored_digest(v1), delivery_mark("webhook:1")) == "unique"
    assert classify(*first, stored_digest(v1), delivery_mark("poll:2")) == "duplicate"
    assert classify(*first, stored_digest(v2), delivery_mark("poll:2")) == "update"
    assert classify(stored_digest(v1), None, stored_digest(v1), delivery_mark("x")) == "unique"
