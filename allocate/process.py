"""Pure allocation decisions: which warehouse(s) ship an order, by the merchant's rules, and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import combinations
from typing import TYPE_CHECKING, Any

from schemas.events import Hold, Shipment, ShipmentLine
from schemas.order import Order

if TYPE_CHECKING:
    from runtime.settings import AllocateSettings

Point = tuple[float, float]
Distance = Callable[[Point, Point], float]

DEFAULT_RULES = ("single_complete", "region_ranking", "nearest")
# Deciders after the configured rules, in order; `rule` names one when every rule tied.
TIE_BREAKS = ("more_stock", "priority", "code")
ONLY_CANDIDATE = "only_candidate"
SPLIT = "split"
# Combinations of up to this many best-ranked warehouses are searched for the fewest that cover
# an order (2**12 subsets at worst); beyond it a greedy fill in rule order takes over.
MAX_SPLIT_CANDIDATES = 12


@dataclass(frozen=True)
class Candidate:
    """An active warehouse: its priority (lower first), location and available units per SKU."""

    code: str
    priority: int
    location: Point | None
    available: Mapping[str, int]


@dataclass(frozen=True)
class RoutingConfig:
    """The merchant's routing rules, best first, and per-region warehouse rankings."""

    rules: tuple[str, ...] = DEFAULT_RULES
    region_ranking: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: AllocateSettings) -> RoutingConfig:
        return cls(rules=tuple(settings.rules), region_ranking=dict(settings.region_ranking))


@dataclass(frozen=True)
class Considered:
    """One warehouse as the decision saw it: what a merchant needs to ask "why this one?"."""

    code: str
    distance_km: float | None
    complete: bool
    available: Mapping[str, int]
    rank: int | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the order's history."""
        return {"code": self.code, "distance_km": self.distance_km, "complete": self.complete,
                "available": dict(self.available), "rank": self.rank}


@dataclass(frozen=True)
class Plan:
    """Shipments that cover the order, the rule that decided, and every warehouse weighed."""

    shipments: tuple[Shipment, ...]
    rule: str
    reason: str
    considered: tuple[Considered, ...]

    def explanation(self) -> dict[str, Any]:
        """JSON-ready form for the order's history."""
        return {"rule": self.rule, "reason": self.reason,
                "considered": [c.as_dict() for c in self.considered]}


@dataclass(frozen=True)
class _Scored:
    candidate: Candidate
    view: Considered
    stock: int
    useful: bool

    @property
    def code(self) -> str:
        return self.candidate.code


def needed_units(order: Order) -> Counter[str]:
    """Units per merchant SKU over all lines (lines without a SKU are not counted)."""
    need: Counter[str] = Counter()
    for line in order.lines:
        if line.sku is not None and line.quantity > 0:
            need[line.sku] += line.quantity
    return need


def plan(
    order: Order, destination: Point | None, candidates: Sequence[Candidate],
    config: RoutingConfig, distance: Distance,
) -> Plan | Hold:
    """Route an order by the configured rules; a Hold when it cannot be allocated at all.

    Candidates are ordered by the rules as a lexicographic key, then more available units of
    the needed SKUs, priority and code. The best candidate holding any needed unit ships alone
    if it has everything; otherwise the order is split (see `_split`).
    """
    unknown = [str(i) for i, line in enumerate(order.lines, start=1) if not line.sku]
    if unknown:
        return Hold(reason="unknown_sku", details={"lines": ",".join(unknown)})
    if not candidates:
        return Hold(reason="no_warehouse", details={"message": "no active warehouse configured"})
    need = needed_units(order)
    short = _short(need, candidates)
    if short:
        return Hold(reason="out_of_stock", details=short)
    region, ranking = _ranking(order, config)
    scored = sorted((_score(c, need, destination, ranking, distance) for c in candidates),
                    key=lambda s: _key(s, config.rules))
    considered = tuple(s.view for s in scored)
    useful = [s for s in scored if s.useful] or scored
    best = useful[0]
    if best.view.complete:
        rule, reason = _single_reason(useful, config.rules, region)
        return Plan((_shipment(order, [best], reason)[0],), rule, reason, considered)
    anchored = any(s.view.complete for s in useful)
    return _split(order, need, useful, config.rules, anchored, considered)


def approval_reasons(
    order: Order, threshold: Decimal, hold_rules: Sequence[str], first_time_address: bool
) -> list[str]:
    """Why an allocated order must wait for a person's approval; empty when it need not."""
    reasons = []
    if order.paid_cny >= threshold:
        reasons.append(f"paid ¥{order.paid_cny:,.2f} ≥ ¥{_amount(threshold)} threshold")
    if "buyer_note" in hold_rules and (order.buyer_note or "").strip():
        reasons.append("buyer_note")
    if "cod" in hold_rules and "cod" in order.flags:
        reasons.append("cod")
    if "first_time_address" in hold_rules and first_time_address:
        reasons.append("first_time_address")
    return reasons


def _amount(value: Decimal) -> str:
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"


def _short(need: Counter[str], candidates: Sequence[Candidate]) -> dict[str, str]:
    total = {sku: sum(max(c.available.get(sku, 0), 0) for c in candidates) for sku in need}
    return {sku: f"need {qty}, {total[sku]} in all warehouses"
            for sku, qty in sorted(need.items()) if total[sku] < qty}


def _ranking(order: Order, config: RoutingConfig) -> tuple[str | None, Sequence[str]]:
    """The most specific configured region of the recipient ('province/city', then 'province')."""
    r = order.recipient
    province, city = (r.province or "").strip() if r else "", (r.city or "").strip() if r else ""
    for key in (f"{province}/{city}" if city else None, province or None):
        if key is not None and key in config.region_ranking:
            return key, config.region_ranking[key]
    return None, ()


def _score(
    c: Candidate, need: Counter[str], destination: Point | None, ranking: Sequence[str],
    distance: Distance,
) -> _Scored:
    available = {sku: max(c.available.get(sku, 0), 0) for sku in sorted(need)}
    km = (round(distance(destination, c.location), 1)
          if destination is not None and c.location is not None else None)
    rank = list(ranking).index(c.code) + 1 if c.code in ranking else None
    view = Considered(c.code, km, all(available[s] >= q for s, q in need.items()), available, rank)
    return _Scored(c, view, sum(available.values()), any(available.values()))


def _component(rule: str, s: _Scored) -> tuple[int, float]:
    """One rule's part of the sort key: smaller is better; unknown (unranked, unlocated) last."""
    if rule == "single_complete":
        return (0 if s.view.complete else 1, 0.0)
    if rule == "region_ranking":
        return (0, float(s.view.rank)) if s.view.rank is not None else (1, 0.0)
    if rule == "nearest":
        km = s.view.distance_km
        return (0, km) if km is not None else (1, 0.0)
    raise ValueError(f"unknown routing rule {rule!r}")


def _ties(s: _Scored) -> tuple[int, int, str]:
    return (-s.stock, s.candidate.priority, s.code)


def _key(s: _Scored, rules: Sequence[str]) -> tuple[Any, ...]:
    return (*(_component(r, s) for r in rules), _ties(s))


def _decider(a: _Scored, b: _Scored, rules: Sequence[str]) -> str:
    """The first rule (then tie-break) on which `a` beats `b`."""
    for rule in rules:
        if _component(rule, a) != _component(rule, b):
            return rule
    return next((n for n, x, y in zip(TIE_BREAKS, _ties(a), _ties(b), strict=True) if x != y),
                "code")


def _single_reason(
    ranked: Sequence[_Scored], rules: Sequence[str], region: str | None
) -> tuple[str, str]:
    best = ranked[0]
    km = f", {best.view.distance_km:.0f} km" if best.view.distance_km is not None else ""
    if len(ranked) == 1:
        return ONLY_CANDIDATE, f"{best.code}: the only warehouse holding the items{km}"
    rule = _decider(best, ranked[1], rules)
    cut = rules.index(rule) if rule in rules else len(rules)
    pool = [s for s in ranked if all(_component(r, s) == _component(r, best) for r in rules[:cut])]
    every = ("warehouses that can ship every item" if all(s.view.complete for s in pool)
             else "warehouses")
    n = len(pool)
    why = {
        "single_complete": f"the only one of {n} warehouses that can ship every item",
        "region_ranking": f"ranked #{best.view.rank} for {region} among {n} {every}",
        "nearest": f"nearest of {n} {every}",
        "more_stock": f"most stock of the ordered items ({best.stock} units) among {n} "
                      f"equally placed {every}",
        "priority": f"highest priority among {n} equally placed {every}",
        "code": f"first by code among {n} equally placed {every}",
    }[rule]
    return rule, f"{best.code}: {why}{km}"


def _split(
    order: Order, need: Counter[str], ranked: Sequence[_Scored], rules: Sequence[str],
    anchored: bool, considered: tuple[Considered, ...],
) -> Plan:
    """The fewest warehouses that together cover the order; among those the least total distance.

    Anchored: a rule placed above `single_complete` preferred a warehouse that lacks some items
    while another has them all, so that warehouse ships what it holds and the fewest others the
    rest. Otherwise no warehouse has everything and the search is over all combinations.
    """
    members = _fewest(ranked[:MAX_SPLIT_CANDIDATES], need, anchored) or _greedy(ranked, need)
    codes = ", ".join(m.code for m in members)
    total = sum(m.view.distance_km or 0.0 for m in members)
    located = any(m.view.distance_km is not None for m in members)
    km = f", {total:.0f} km in total" if located else ""
    if anchored:
        complete = next(s for s in ranked if s.view.complete)
        rule = _decider(ranked[0], complete, rules)
        reason = (f"{ranked[0].code} is preferred ({rule}) but lacks some items: split across "
                  f"{len(members)} warehouses ({codes}){km}")
    else:
        reason = (f"no single warehouse can ship every item: split across the fewest, "
                  f"{len(members)} ({codes}){km}")
    return Plan(_shipment(order, members, reason), SPLIT, reason, considered)


def _covers(members: Sequence[_Scored], need: Counter[str]) -> bool:
    return all(sum(m.view.available[sku] for m in members) >= q for sku, q in need.items())


def _fewest(pool: Sequence[_Scored], need: Counter[str], anchored: bool) -> list[_Scored]:
    """Smallest covering subset of `pool` (with pool[0] when anchored); ties → least total km
    (a warehouse of unknown location counts as farther than any), then better-ranked members."""
    for size in range(1, len(pool) + 1):
        found = [c for c in combinations(range(len(pool)), size)
                 if (not anchored or c[0] == 0) and _covers([pool[i] for i in c], need)]
        if found:
            return [pool[i] for i in min(found, key=lambda c: (_cost([pool[i] for i in c]), c))]
    return []


def _cost(members: Sequence[_Scored]) -> tuple[int, float]:
    kms = [m.view.distance_km for m in members]
    return (sum(km is None for km in kms), sum(km for km in kms if km is not None))


def _greedy(ranked: Sequence[_Scored], need: Counter[str]) -> list[_Scored]:
    """Fallback past MAX_SPLIT_CANDIDATES: take warehouses in rule order until covered."""
    members: list[_Scored] = []
    for s in ranked:
        short = [k for k, q in need.items() if sum(m.view.available[k] for m in members) < q]
        if not short:
            break
        if any(s.view.available[k] for k in short):
            members.append(s)
    return members


def _shipment(order: Order, members: Sequence[_Scored], reason: str) -> tuple[Shipment, ...]:
    """Fill each line from `members` in their order, splitting a line when one runs short."""
    left = {m.code: dict(m.view.available) for m in members}
    lines: dict[str, list[ShipmentLine]] = {m.code: [] for m in members}
    for line_no, line in enumerate(order.lines, start=1):
        sku, remaining = line.sku or "", line.quantity
        for m in members:
            take = min(remaining, left[m.code].get(sku, 0))
            if take > 0:
                lines[m.code].append(ShipmentLine(line_no=line_no, sku=sku, quantity=take))
                left[m.code][sku] -= take
                remaining -= take
    return tuple(Shipment(warehouse=m.code, lines=tuple(lines[m.code]),
                          reason=reason if len(members) == 1 else f"{m.code}: part of {reason}")
                 for m in members if lines[m.code])
