"""Pure allocation decisions: which single warehouse can ship an order whole, or why none."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.events import Hold, ShipmentLine
from schemas.order import Order

RULE_SINGLE = "single_warehouse_by_priority"


@dataclass(frozen=True)
class WarehouseStock:
    """A candidate warehouse (already in priority order) and its available units per SKU."""

    code: str
    available: Mapping[str, int]


@dataclass(frozen=True)
class Allocation:
    """Ship every line from one warehouse."""

    warehouse: str
    lines: tuple[ShipmentLine, ...]
    rule: str
    reason: str


def needed_units(order: Order) -> Counter[str]:
    """Units per merchant SKU over all lines (lines without a SKU are not counted)."""
    need: Counter[str] = Counter()
    for line in order.lines:
        if line.sku is not None:
            need[line.sku] += line.quantity
    return need


def allocate(order: Order, candidates: Sequence[WarehouseStock]) -> Allocation | Hold:
    """The first candidate that has every SKU in full, else the hold that explains why not."""
    unknown = [str(i) for i, line in enumerate(order.lines, start=1) if not line.sku]
    if unknown:
        return Hold(reason="unknown_sku", details={"lines": ",".join(unknown)})
    if not candidates:
        return Hold(reason="no_warehouse", details={"message": "no active warehouse configured"})
    need = needed_units(order)
    for w in candidates:
        if all(w.available.get(sku, 0) >= qty for sku, qty in need.items()):
            return _whole(order, w, len(candidates))
    return Hold(reason="out_of_stock", details=_shortages(need, candidates))


def _whole(order: Order, w: WarehouseStock, considered: int) -> Allocation:
    lines = tuple(
        ShipmentLine(line_no=i, sku=line.sku or "", quantity=line.quantity)
        for i, line in enumerate(order.lines, start=1)
    )
    reason = f"{w.code}: first of {considered} active warehouse(s) by priority with every SKU"
    return Allocation(warehouse=w.code, lines=lines, rule=RULE_SINGLE, reason=reason)


def _shortages(need: Counter[str], candidates: Sequence[WarehouseStock]) -> dict[str, str]:
    best = {sku: max(w.available.get(sku, 0) for w in candidates) for sku in need}
    return {
        sku: f"need {qty}, most in one warehouse {best[sku]}"
        for sku, qty in sorted(need.items())
        if best[sku] < qty
    } or {"message": "no single warehouse holds every SKU"}
