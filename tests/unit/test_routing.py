from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal
from itertools import combinations, permutations
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from allocate.process import (
    Candidate,
    Plan,
    RoutingConfig,
    approval_reasons,
    needed_units,
    plan,
)
from normalize.process import normalize
from normalize.rates import DEFAULT_RATES, RateTable
from runtime.settings import AllocateSettings
from schemas.events import Hold
from schemas.order import Order, OrderLine, Recipient
from tests.builders import raw, shopify_fixture

RATES = RateTable.from_mapping(DEFAULT_RATES)
BASE = normalize(raw(shopify_fixture()), RATES)
HANGZHOU = (30.27, 120.16)
SHANGHAI = (31.23, 121.47)
GUANGZHOU = (23.13, 113.26)
BEIJING = (39.90, 116.40)
DEFAULT = RoutingConfig()


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = (map(math.radians, p) for p in (a, b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371 * math.asin(math.sqrt(h))


def order(*lines: tuple[str | None, int], province: str = "浙江省", city: str = "杭州市",
          **changes: Any) -> Order:
    return BASE.model_copy(update={
        "lines": tuple(OrderLine(sku=sku, quantity=q, unit_price=Decimal(1),
                                 line_total=Decimal(q)) for sku, q in lines),
        "recipient": Recipient(country="CN", province=province, city=city), **changes})


def wh(code: str, location: tuple[float, float] | None, priority: int = 1,
       **stock: int) -> Candidate:
    return Candidate(code, priority, location, stock)


def route(o: Order, candidates: list[Candidate], config: RoutingConfig = DEFAULT,
          destination: tuple[float, float] | None = HANGZHOU) -> Plan:
    result = plan(o, destination, candidates, config, haversine)
    assert isinstance(result, Plan), result
    return result


def shipped(p: Plan) -> list[tuple[str, int, str, int]]:
    return [(s.warehouse, ln.line_no, ln.sku, ln.quantity) for s in p.shipments for ln in s.lines]


def test_a_hangzhou_recipient_is_shipped_from_the_hangzhou_warehouse() -> None:
    p = route(order(("MUG", 2), ("TEA", 1)), [
        wh("WH-GZ", GUANGZHOU, priority=0, MUG=5, TEA=5), wh("WH-HZ", HANGZHOU, MUG=2, TEA=1)])
    assert shipped(p) == [("WH-HZ", 1, "MUG", 2), ("WH-HZ", 2, "TEA", 1)]
    assert p.rule == "nearest"
    assert p.reason == "WH-HZ: nearest of 2 warehouses that can ship every item, 0 km"
    assert [c.code for c in p.considered] == ["WH-HZ", "WH-GZ"]
    assert p.considered[1].distance_km is not None and p.considered[1].distance_km > 900


def test_a_complete_shipment_is_preferred_over_a_nearer_partial_one() -> None:
    p = route(order(("MUG", 2), ("TEA", 1)), [
        wh("WH-HZ", HANGZHOU, MUG=2), wh("WH-SH", SHANGHAI, MUG=2, TEA=1)])
    assert {s.warehouse for s in p.shipments} == {"WH-SH"}
    assert p.rule == "single_complete"
    assert p.reason.startswith("WH-SH: the only one of 2 warehouses that can ship every item")
    assert [(c.code, c.complete, dict(c.available)) for c in p.considered] == [
        ("WH-SH", True, {"MUG": 2, "TEA": 1}), ("WH-HZ", False, {"MUG": 2, "TEA": 0})]


def test_a_split_takes_the_nearer_pair_when_two_warehouses_suffice() -> None:
    p = route(order(("MUG", 2), ("TEA", 2)), [
        wh("WH-GZ", GUANGZHOU, TEA=2), wh("WH-HZ", HANGZHOU, MUG=2), wh("WH-SH", SHANGHAI, TEA=2)])
    assert p.rule == "split"
    assert shipped(p) == [("WH-HZ", 1, "MUG", 2), ("WH-SH", 2, "TEA", 2)]
    assert all(s.reason.startswith(f"{s.warehouse}: part of no single") for s in p.shipments)


def test_a_split_uses_the_fewest_warehouses_even_when_nearer_ones_would_need_more() -> None:
    p = route(order(("MUG", 2), ("TEA", 2), ("PEN", 1)), [
        wh("WH-HZ", HANGZHOU, MUG=1, TEA=1), wh("WH-SH", SHANGHAI, MUG=1, TEA=1),
        wh("WH-GZ", GUANGZHOU, MUG=2, TEA=2), wh("WH-BJ", BEIJING, PEN=1)])
    assert sorted(s.warehouse for s in p.shipments) == ["WH-BJ", "WH-GZ"]


def test_a_line_can_be_split_across_warehouses_keeping_its_line_number() -> None:
    p = route(order(("MUG", 5)), [wh("WH-HZ", HANGZHOU, MUG=3), wh("WH-SH", SHANGHAI, MUG=4)])
    assert shipped(p) == [("WH-HZ", 1, "MUG", 3), ("WH-SH", 1, "MUG", 2)]


def test_a_configured_region_ranking_wins_over_distance() -> None:
    config = RoutingConfig(region_ranking={"浙江省": ("WH-GZ", "WH-HZ")})
    p = route(order(("MUG", 1)), [wh("WH-HZ", HANGZHOU, MUG=1), wh("WH-GZ", GUANGZHOU, MUG=1)],
              config)
    assert p.shipments[0].warehouse == "WH-GZ"
    assert p.rule == "region_ranking"
    assert p.reason.startswith("WH-GZ: ranked #1 for 浙江省 among 2 warehouses")
    assert [(c.code, c.rank) for c in p.considered] == [("WH-GZ", 1), ("WH-HZ", 2)]


def test_a_city_ranking_is_more_specific_than_its_province() -> None:
    config = RoutingConfig(region_ranking={"浙江省": ("WH-GZ",), "浙江省/杭州市": ("WH-SH",)})
    candidates = [wh("WH-HZ", HANGZHOU, MUG=1), wh("WH-GZ", GUANGZHOU, MUG=1),
                  wh("WH-SH", SHANGHAI, MUG=1)]
    assert route(order(("MUG", 1)), candidates, config).shipments[0].warehouse == "WH-SH"
    ningbo = order(("MUG", 1), city="宁波市")
    assert route(ningbo, candidates, config).shipments[0].warehouse == "WH-GZ"
    beijing = order(("MUG", 1), province="北京市", city="北京市")
    assert route(beijing, candidates, config).shipments[0].warehouse == "WH-HZ"


def test_putting_nearest_before_region_ranking_changes_the_winner() -> None:
    ranking = {"浙江省": ("WH-GZ", "WH-HZ")}
    candidates = [wh("WH-HZ", HANGZHOU, MUG=1), wh("WH-GZ", GUANGZHOU, MUG=1)]
    first = RoutingConfig(("single_complete", "nearest", "region_ranking"), ranking)
    p = route(order(("MUG", 1)), candidates, first)
    assert (p.shipments[0].warehouse, p.rule) == ("WH-HZ", "nearest")


def test_putting_nearest_before_completeness_splits_from_the_nearest_warehouse() -> None:
    config = RoutingConfig(("nearest", "single_complete", "region_ranking"))
    p = route(order(("MUG", 2), ("TEA", 1)), [
        wh("WH-HZ", HANGZHOU, MUG=2), wh("WH-SH", SHANGHAI, MUG=2, TEA=1)], config)
    assert p.rule == "split"
    assert shipped(p) == [("WH-HZ", 1, "MUG", 2), ("WH-SH", 2, "TEA", 1)]
    assert p.reason.startswith("WH-HZ is preferred (nearest) but lacks some items")


def test_a_warehouse_holding_none_of_the_items_is_weighed_but_never_chosen() -> None:
    config = RoutingConfig(("nearest", "single_complete", "region_ranking"))
    p = route(order(("MUG", 1)), [wh("WH-HZ", HANGZHOU), wh("WH-SH", SHANGHAI, MUG=1)], config)
    assert [s.warehouse for s in p.shipments] == ["WH-SH"]
    assert [c.code for c in p.considered] == ["WH-HZ", "WH-SH"]
    assert p.rule == "only_candidate"


def test_equally_placed_warehouses_are_decided_by_more_stock_then_priority() -> None:
    stocked = route(order(("MUG", 1)), [
        wh("WH-A", HANGZHOU, priority=0, MUG=1), wh("WH-B", HANGZHOU, priority=1, MUG=9)])
    assert (stocked.shipments[0].warehouse, stocked.rule) == ("WH-B", "more_stock")
    assert "most stock of the ordered items (9 units)" in stocked.reason
    by_priority = route(order(("MUG", 1)), [
        wh("WH-A", HANGZHOU, priority=2, MUG=3), wh("WH-B", HANGZHOU, priority=1, MUG=3)])
    assert (by_priority.shipments[0].warehouse, by_priority.rule) == ("WH-B", "priority")


def test_without_a_destination_every_warehouse_is_equally_near() -> None:
    p = route(order(("MUG", 1)), [wh("WH-HZ", HANGZHOU, MUG=1), wh("WH-GZ", GUANGZHOU, MUG=4)],
              destination=None)
    assert (p.shipments[0].warehouse, p.rule) == ("WH-GZ", "more_stock")
    assert all(c.distance_km is None for c in p.considered)


def test_a_warehouse_of_unknown_location_comes_after_located_ones() -> None:
    p = route(order(("MUG", 1)), [wh("WH-X", None, MUG=9), wh("WH-GZ", GUANGZHOU, MUG=1)])
    assert (p.shipments[0].warehouse, p.rule) == ("WH-GZ", "nearest")


def test_the_only_warehouse_is_named_as_such() -> None:
    p = route(order(("MUG", 1)), [wh("WH-HZ", HANGZHOU, MUG=1)])
    assert p.rule == "only_candidate"
    assert p.explanation()["considered"] == [{"code": "WH-HZ", "distance_km": 0.0,
                                              "complete": True, "available": {"MUG": 1},
                                              "rank": None}]


def test_running_out_of_stock_in_all_warehouses_is_a_hold_naming_each_short_sku() -> None:
    result = plan(order(("MUG", 3), ("TEA", 1), ("PEN", 2)), HANGZHOU,
                  [wh("WH-HZ", HANGZHOU, MUG=1, PEN=2), wh("WH-SH", SHANGHAI, MUG=1)], DEFAULT,
                  haversine)
    assert result == Hold(reason="out_of_stock", details={
        "MUG": "need 3, 2 in all warehouses", "TEA": "need 1, 0 in all warehouses"})


def test_no_warehouse_and_unknown_skus_are_holds() -> None:
    assert plan(order(("MUG", 1)), HANGZHOU, [], DEFAULT, haversine) == Hold(
        reason="no_warehouse", details={"message": "no active warehouse configured"})
    assert plan(order(("MUG", 1), (None, 1)), HANGZHOU, [wh("WH-HZ", HANGZHOU, MUG=1)], DEFAULT,
                haversine) == Hold(reason="unknown_sku", details={"lines": "2"})


def test_routing_config_is_built_from_the_allocate_settings() -> None:
    config = RoutingConfig.from_settings(AllocateSettings(
        rules=("nearest", "single_complete"), region_ranking={"浙江省": ("WH-HZ",)}))
    assert config == RoutingConfig(("nearest", "single_complete"), {"浙江省": ("WH-HZ",)})
    assert RoutingConfig.from_settings(AllocateSettings()).rules == DEFAULT.rules


# Properties over small random stock and orders.

SKUS = ("A", "B", "C")
RULE_ORDERS = list(permutations(("single_complete", "region_ranking", "nearest")))
points = st.tuples(st.floats(20, 45), st.floats(100, 125))
warehouses = st.lists(
    st.tuples(st.one_of(st.none(), points), st.integers(0, 2),
              st.dictionaries(st.sampled_from(SKUS), st.integers(0, 5))),
    min_size=1, max_size=5)
lines = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 6)), min_size=1, max_size=4)


def _covers(members: list[Candidate], need: Counter[str]) -> bool:
    return all(sum(m.available.get(k, 0) for m in members) >= q for k, q in need.items())


@settings(max_examples=300, deadline=None)
@given(warehouses, lines, st.one_of(st.none(), points), st.sampled_from(RULE_ORDERS),
       st.permutations(["WH-0", "WH-1", "WH-2", "WH-3", "WH-4"]))
def test_a_plan_ships_exactly_the_order_from_stock_that_exists_in_the_fewest_warehouses(
    stock: list[Any], wanted: list[tuple[str, int]], destination: tuple[float, float] | None,
    rules: tuple[str, ...], ranking: list[str],
) -> None:
    candidates = [Candidate(f"WH-{i}", prio, loc, avail)
                  for i, (loc, prio, avail) in enumerate(stock)]
    o = order(*wanted)
    config = RoutingConfig(rules, {"浙江省": ranking[:2]})
    result = plan(o, destination, candidates, config, haversine)
    assert result == plan(o, destination, candidates[::-1], config, haversine)
    need = needed_units(o)
    if isinstance(result, Hold):
        assert result.reason == "out_of_stock"
        assert not _covers(candidates, need)
        return
    taken: Counter[tuple[str, str]] = Counter()
    per_line: Counter[int] = Counter()
    for s in result.shipments:
        assert s.lines
        for ln in s.lines:
            assert ln.quantity > 0
            taken[(s.warehouse, ln.sku)] += ln.quantity
            per_line[ln.line_no] += ln.quantity
    available = {c.code: c.available for c in candidates}
    assert all(q <= available[w].get(k, 0) for (w, k), q in taken.items())
    assert per_line == {i: q for i, (_, q) in enumerate(wanted, start=1)}
    assert len({s.warehouse for s in result.shipments}) == len(result.shipments)
    assert len(result.considered) == len(candidates)
    fewest = next(n for n in range(1, len(candidates) + 1)
                  if any(_covers(list(c), need) for c in combinations(candidates, n)))
    if rules[0] == "single_complete" or fewest > 1:
        assert len(result.shipments) == fewest
    else:
        assert len(result.shipments) <= 2


def test_approval_is_needed_at_the_paid_threshold() -> None:
    assert approval_reasons(order(("MUG", 1), paid_cny=Decimal("6200")), Decimal(5000), (),
                            False) == ["paid ¥6,200.00 ≥ ¥5,000 threshold"]
    assert approval_reasons(order(("MUG", 1), paid_cny=Decimal("5000.00")), Decimal(5000), (),
                            False) == ["paid ¥5,000.00 ≥ ¥5,000 threshold"]
    assert approval_reasons(order(("MUG", 1), paid_cny=Decimal("4999.99")), Decimal(5000), (),
                            False) == []


def test_further_approval_holds_apply_only_when_their_rule_is_on() -> None:
    o = order(("MUG", 1), paid_cny=Decimal(10), buyer_note="请周末送", flags=("cod",))
    assert approval_reasons(o, Decimal(5000), (), True) == []
    assert approval_reasons(o, Decimal(5000), ("buyer_note", "cod", "first_time_address"),
                            True) == ["buyer_note", "cod", "first_time_address"]
    quiet = order(("MUG", 1), paid_cny=Decimal(10), buyer_note="  ", flags=())
    assert approval_reasons(quiet, Decimal(5000), ("buyer_note", "cod", "first_time_address"),
                            False) == []


def test_an_order_needing_more_than_the_searched_warehouses_is_filled_in_rule_order() -> None:
    candidates = [wh(f"WH-{i:02}", (30.0 + i, 120.0), MUG=1) for i in range(14)]
    p = route(order(("MUG", 14)), candidates)
    assert [s.warehouse for s in p.shipments] == [f"WH-{i:02}" for i in range(14)]
    assert p.rule == "split"
