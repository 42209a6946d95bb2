"""Master data: warehouses from YAML, stock levels from operators and CSV, each change ledgered."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field, StringConstraints, ValidationError, model_validator
from sqlalchemy import Connection, text

from allocate.projection import set_stock
from schemas.base import Contract
from schemas.errors import ConfigurationError, InvalidInput
from schemas.events import InventoryChanged

MAX_UNITS = 1_000_000_000
MAX_LISTED_ERRORS = 20
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class WarehouseSpec(Contract):
    """One warehouse as a master-data file declares it."""

    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="e.g. WH-HZ")
    name: Name
    province: Name = Field(description="e.g. 浙江省")
    city: Name = Field(description="e.g. 杭州市")
    address: Name | None = None
    latitude: Decimal | None = Field(default=None, ge=-90, le=90)
    longitude: Decimal | None = Field(default=None, ge=-180, le=180)
    priority: int = Field(default=100, ge=0, description="lower ships first")
    active: bool = True
    carriers: tuple[Name, ...] = Field(default=(), description="carrier codes, e.g. ZTO, SF")

    @model_validator(mode="after")
    def _coordinates_come_in_pairs(self) -> WarehouseSpec:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together: give both or neither")
        return self


class StockLevel(NamedTuple):
    """One row of a stock file: units on hand (and optionally safety stock) at a line number."""

    line: int
    warehouse: str
    sku: str
    on_hand: int
    safety_stock: int | None


def _refused(problems: Sequence[str], what: str) -> str:
    shown = [f"  {p}" for p in problems[:MAX_LISTED_ERRORS]]
    more = len(problems) - len(shown)
    return "\n".join([f"{what}; nothing was written:", *shown,
                      *([f"  … and {more} more"] if more else [])])


def _pydantic_problem(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in error.errors()
    )


def parse_warehouses(document: str) -> list[WarehouseSpec]:
    """Every warehouse of a YAML document (`warehouses:` list); all problems reported at once."""
    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError as e:
        raise InvalidInput(f"not valid YAML: {e}") from e
    entries = data.get("warehouses") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise InvalidInput("expected a non-empty list of warehouses under `warehouses:`")
    specs: list[WarehouseSpec] = []
    problems: list[str] = []
    for n, entry in enumerate(entries, 1):
        code = entry.get("code") if isinstance(entry, dict) else None
        label = f"warehouse {n}" + (f" ({code})" if code else "")
        try:
            spec = WarehouseSpec.model_validate(entry)
        except ValidationError as e:
            problems.append(f"{label}: {_pydantic_problem(e)}")
            continue
        if any(s.code == spec.code for s in specs):
            problems.append(f"{label}: code {spec.code!r} is declared twice")
        specs.append(spec)
    if problems:
        raise InvalidInput(_refused(problems, f"invalid warehouse entries: {len(problems)}"))
    return specs


def _units(row: Mapping[str, str | None], column: str) -> int:
    raw = (row.get(column) or "").strip()
    if not re.fullmatch(r"\d+", raw) or int(raw) > MAX_UNITS:
        raise ValueError(f"{column} must be a whole number of units from 0 to {MAX_UNITS:,}, "
                         f"got {raw!r}")
    return int(raw)


def _stock_level(line: int, row: Mapping[str | None, Any]) -> StockLevel:
    if row.get(None):
        raise ValueError("more fields than the header has columns")
    cells = {k: v for k, v in row.items() if k is not None}
    warehouse, sku = ((cells.get(c) or "").strip() for c in ("warehouse", "sku"))
    if not warehouse or not sku:
        raise ValueError("warehouse and sku must not be empty")
    safety = _units(cells, "safety_stock") if (cells.get("safety_stock") or "").strip() else None
    return StockLevel(line, warehouse, sku, _units(cells, "on_hand"), safety)


def parse_stock_csv(document: str) -> list[StockLevel]:
    """Rows of a CSV with columns warehouse,sku,on_hand[,safety_stock]; lines as a person counts."""
    reader = csv.DictReader(io.StringIO(document, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [c for c in ("warehouse", "sku", "on_hand") if c not in header]
    unknown = [c for c in header if c not in ("warehouse", "sku", "on_hand", "safety_stock")]
    if missing or unknown:
        raise InvalidInput(f"line 1: the header must be warehouse,sku,on_hand[,safety_stock]; "
                           f"missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
    levels: list[StockLevel] = []
    problems: list[str] = []
    first_seen: dict[tuple[str, str], int] = {}
    try:
        for row in reader:
            try:
                level = _stock_level(reader.line_num, row)
            except ValueError as e:
                problems.append(f"line {reader.line_num}: {e}")
                continue
            earlier = first_seen.setdefault((level.warehouse, level.sku), level.line)
            if earlier != level.line:
                problems.append(f"line {level.line}: {level.warehouse}/{level.sku} is already "
                                f"on line {earlier}")
            levels.append(level)
    except csv.Error as e:
        raise InvalidInput(f"line {reader.line_num + 1}: not readable as CSV: {e}") from e
    if problems:
        raise InvalidInput(_refused(problems, f"invalid rows: {len(problems)}"))
    if not levels:
        raise InvalidInput("the file has a header but no stock rows")
    return levels


class InventoryMetrics(NamedTuple):
    low_stock: Counter


def build_metrics(registry: CollectorRegistry) -> InventoryMetrics:
    return InventoryMetrics(low_stock=Counter(
        "orderhub_inventory_low_stock", "Times a SKU's available units fell below safety stock",
        ["warehouse"], registry=registry))


def count_low(metrics: InventoryMetrics, events: Iterable[InventoryChanged]) -> None:
    """Count the low_stock crossings among events (call after the transaction committed)."""
    for e in events:
        if e.kind == "low_stock":
            metrics.low_stock.labels(e.warehouse).inc()


def save_warehouses(conn: Connection, specs: Sequence[WarehouseSpec]) -> int:
    """Insert or update every warehouse; returns how many were new. Others are left alone."""
    new = 0
    for s in specs:
        params = s.model_dump(exclude={"carriers"}) | {"carriers": json.dumps(list(s.carriers))}
        new += bool(conn.execute(text(
            "INSERT INTO warehouses (code, name, province, city, address, latitude, longitude, "
            "priority, active, carriers) VALUES (:code, :name, :province, :city, :address, "
            ":latitude, :longitude, :priority, :active, CAST(:carriers AS jsonb)) "
            "ON CONFLICT (code) DO UPDATE SET name = :name, province = :province, city = :city, "
            "address = :address, latitude = :latitude, longitude = :longitude, "
            "priority = :priority, active = :active, carriers = CAST(:carriers AS jsonb) "
            "RETURNING xmax = 0"), params).scalar_one())
    return new


def list_warehouses(conn: Connection) -> list[dict[str, Any]]:
    """Warehouses in priority order with how many SKUs they stock and their available units."""
    return [dict(r) for r in conn.execute(text(
        "SELECT w.code, w.name, w.province, w.city, w.address, w.latitude, w.longitude, "
        "w.priority, w.active, w.carriers, count(s.sku) AS skus, "
        "coalesce(sum(s.available), 0) AS available FROM warehouses w "
        "LEFT JOIN stock s ON s.warehouse = w.code GROUP BY w.code ORDER BY w.priority, w.code"
    )).mappings()]


def list_stock(conn: Connection, warehouse: str | None = None, sku: str | None = None,
               only_low: bool = False) -> list[dict[str, Any]]:
    """Stock rows by warehouse and SKU; `only_low`: those with available below safety stock."""
    return [dict(r) for r in conn.execute(text(
        "SELECT warehouse, sku, on_hand, reserved, available, safety_stock, defective, low, "
        "updated_at FROM stock WHERE (CAST(:w AS text) IS NULL OR warehouse = :w) "
        "AND (CAST(:s AS text) IS NULL OR sku = :s) "
        "AND (NOT :only_low OR available < safety_stock) ORDER BY warehouse, sku"),
        {"w": warehouse, "s": sku, "only_low": only_low}).mappings()]


def require_warehouse(conn: Connection, code: str) -> None:
    if conn.execute(text("SELECT 1 FROM warehouses WHERE code = :c"), {"c": code}).first():
        return
    raise ConfigurationError(f"no warehouse {code!r}; add it with `orderhub warehouses add "
                             f"{code} --province P --city C`")


def check_low(conn: Connection, warehouse: str, skus: Iterable[str], *, at: datetime,
              source: str = "allocate") -> list[InventoryChanged]:
    """Flip `stock.low` where available crossed safety stock; a low_stock event per fall below.

    Recovering (available back at or above safety stock) only clears the flag, so the next fall
    alerts again; staying low alerts nothing. Call it in the transaction that changed the stock.
    """
    flipped = conn.execute(text(
        "UPDATE stock SET low = available < safety_stock WHERE warehouse = :w AND sku = ANY(:s) "
        "AND low <> (available < safety_stock) RETURNING sku, available, low"),
        {"w": warehouse, "s": sorted(set(skus))}).all()
    return [InventoryChanged(kind="low_stock", warehouse=warehouse, sku=sku, available=available,
                             at=at, source=source)
            for sku, available, low in sorted(flipped) if low]


def _ledger(conn: Connection, key: str, change: InventoryChanged, reason: str | None) -> None:
    conn.execute(text(
        "INSERT INTO stock_movements (event_key, warehouse, sku, kind, on_hand_delta, reason, at) "
        "VALUES (:key, :w, :s, :kind, :d, :reason, :at)"),
        {"key": key, "w": change.warehouse, "s": change.sku, "kind": change.kind,
         "d": change.delta, "reason": reason, "at": change.at})


def _write_safety(conn: Connection, warehouse: str, sku: str, safety: int) -> None:
    conn.execute(text("UPDATE stock SET safety_stock = :q, updated_at = now() "
                      "WHERE warehouse = :w AND sku = :s"), {"q": safety, "w": warehouse, "s": sku})


def _levels(conn: Connection, warehouse: str, sku: str) -> tuple[int, int] | None:
    row = conn.execute(text(
        "SELECT on_hand, reserved FROM stock WHERE warehouse = :w AND sku = :s FOR UPDATE"),
        {"w": warehouse, "s": sku}).first()
    return None if row is None else (row[0], row[1])


def _change(conn: Connection, kind: Literal["stock_set", "stock_adjusted"], warehouse: str,
            sku: str, on_hand: int, *, key: str, reason: str | None, at: datetime,
            source: str) -> InventoryChanged:
    before = (_levels(conn, warehouse, sku) or (0, 0))[0]
    available = set_stock(conn, warehouse, sku, on_hand)
    change = InventoryChanged(kind=kind, warehouse=warehouse, sku=sku, available=available,
                              delta=on_hand - before, at=at, source=source)
    _ledger(conn, key, change, reason)
    return change


def set_level(conn: Connection, warehouse: str, sku: str, on_hand: int, *, key: str,
              at: datetime, source: str, safety: int | None = None,
              reason: str | None = None) -> list[InventoryChanged]:
    """Set units on hand (and safety stock); the stock_set event first, then any low_stock."""
    require_warehouse(conn, warehouse)
    change = _change(conn, "stock_set", warehouse, sku, on_hand, key=key, reason=reason, at=at,
                     source=source)
    if safety is not None:
        _write_safety(conn, warehouse, sku, safety)
    return [change, *check_low(conn, warehouse, [sku], at=at, source=source)]


def adjust_level(conn: Connection, warehouse: str, sku: str, delta: int, reason: str, *,
                 key: str, at: datetime, source: str) -> list[InventoryChanged]:
    """Add or remove units on hand; never below what orders have reserved."""
    require_warehouse(conn, warehouse)
    if delta == 0:
        raise ConfigurationError("an adjustment of 0 changes nothing; give e.g. 5 or -3")
    on_hand, reserved = _levels(conn, warehouse, sku) or (0, 0)
    if on_hand + delta < reserved:
        held = f"the {reserved} unit(s) reserved for orders" if reserved else "zero"
        raise ConfigurationError(
            f"{warehouse}/{sku}: on hand {on_hand} {delta:+d} would be {on_hand + delta}, below "
            f"{held}; at most {on_hand - reserved} unit(s) can be removed")
    change = _change(conn, "stock_adjusted", warehouse, sku, on_hand + delta, key=key,
                     reason=reason, at=at, source=source)
    return [change, *check_low(conn, warehouse, [sku], at=at, source=source)]


def set_safety(conn: Connection, warehouse: str, sku: str, safety: int, *, at: datetime,
               source: str) -> list[InventoryChanged]:
    """Change a stocked SKU's safety stock; returns the low_stock event if it now falls below."""
    require_warehouse(conn, warehouse)
    if _levels(conn, warehouse, sku) is None:
        raise ConfigurationError(
            f"{warehouse} has no stock row for {sku!r}; create it with `orderhub stock set "
            f"{warehouse} {sku} QTY --safety {safety}`")
    _write_safety(conn, warehouse, sku, safety)
    return check_low(conn, warehouse, [sku], at=at, source=source)


def import_levels(conn: Connection, levels: Sequence[StockLevel], *, batch: str, at: datetime,
                  source: str) -> list[InventoryChanged]:
    """Apply a parsed stock file in one transaction, after checking every row against the DB."""
    codes = sorted({lv.warehouse for lv in levels})
    known = set(conn.execute(text("SELECT code FROM warehouses WHERE code = ANY(:c)"),
                             {"c": codes}).scalars())
    problems = [f"line {lv.line}: no warehouse {lv.warehouse!r}"
                for lv in levels if lv.warehouse not in known]
    for lv in sorted(levels, key=lambda lv: (lv.warehouse, lv.sku)) if not problems else ():
        reserved = (_levels(conn, lv.warehouse, lv.sku) or (0, 0))[1]
        if lv.on_hand < reserved:
            problems.append(f"line {lv.line}: {lv.warehouse}/{lv.sku} has {reserved} unit(s) "
                            f"reserved for orders; on hand cannot be {lv.on_hand}")
    if problems:
        raise ConfigurationError(_refused(sorted(problems, key=_line_no),
                                          f"rows that cannot be applied: {len(problems)}"))
    events: list[InventoryChanged] = []
    for lv in sorted(levels, key=lambda lv: (lv.warehouse, lv.sku)):  # the order rows lock in
        events += set_level(conn, lv.warehouse, lv.sku, lv.on_hand, safety=lv.safety_stock,
                            key=f"{batch}:{lv.line}", reason=f"{source} line {lv.line}", at=at,
                            source=source)
    return events


def _line_no(problem: str) -> int:
    return int(problem.split(":", 1)[0].removeprefix("line "))
