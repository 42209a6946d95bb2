"""The `orderhub warehouses` and `orderhub stock` commands: master data and stock levels."""

from __future__ import annotations

import codecs
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from schemas.errors import InvalidInput

if TYPE_CHECKING:  # annotations only: `--help` should not import the database driver
    from sqlalchemy import Connection

    from runtime.settings import Settings
    from schemas.events import InventoryChanged

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Units = Annotated[int, typer.Argument(min=0, max=1_000_000_000, help="Units on hand")]
YamlFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                          help="Warehouses, UTF-8 YAML")]
CsvFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="Stock levels, CSV")]
ANY_NUMBER = {"ignore_unknown_options": True}  # so `-3` is a delta, not an unknown option


def say(message: str) -> None:
    typer.echo(message, err=True)


def read_text(path: Path, encoding: str | None = None) -> str:
    """The whole file decoded, so a wrong encoding is one error; a UTF-8 BOM wins."""
    data = path.read_bytes()
    try:
        bom = data.startswith(codecs.BOM_UTF8)
        return data.decode("utf-8-sig" if bom or encoding is None else encoding)
    except (UnicodeDecodeError, LookupError) as e:
        hint = "" if encoding is None else " or give its --encoding (gb18030 for Chinese Excel)"
        raise InvalidInput(f"{path.name} is not {encoding or 'UTF-8'} text ({e}); save it as "
                           f"UTF-8{hint}") from e


class InventoryCommands:
    """The commands, given the CLI's settings and transaction helpers (one per process)."""

    def __init__(self, settings: Callable[[], Settings],
                 in_db: Callable[[Callable[[Connection], Any]], Any],
                 print_json: Callable[[Any], None]) -> None:
        self.settings = settings
        self.in_db = in_db
        self.print_json = print_json

    def publish(self, events: Sequence[InventoryChanged]) -> None:
        """Send the committed changes to inventory.events, keyed by SKU."""
        from ingest.agent import produce_all
        from runtime.kafka import make_producer
        from runtime.services import discover
        from schemas.topics import INVENTORY

        s = self.settings()
        topic = INVENTORY.full_name(s.kafka.topic_prefix)
        producer = make_producer(discover(s).bootstrap, "orderhub-inventory")
        produce_all(producer, s, [(topic, e.sku, e.model_dump_json().encode()) for e in events])

    def change(self, work: Callable[[Connection, datetime], list[InventoryChanged]]
               ) -> list[InventoryChanged]:
        """Database first, then the events: a refused change sends nothing."""
        from schemas.base import SHANGHAI

        now = datetime.now(SHANGHAI)
        events: list[InventoryChanged] = self.in_db(lambda conn: work(conn, now))
        self.publish(events)
        for e in events:
            if e.kind == "low_stock":
                say(f"LOW STOCK: {e.warehouse}/{e.sku} available {e.available} is below its "
                    "safety stock (`orderhub stock low`)")
        return events

    def warehouses_add(
        self, code: str,
        province: Annotated[str, typer.Option(help="e.g. 浙江省")],
        city: Annotated[str, typer.Option(help="e.g. 杭州市")],
        name: Annotated[str | None, typer.Option(help="Display name [default: CODE]")] = None,
        priority: Annotated[int, typer.Option(help="Lower ships first.")] = 100,
    ) -> None:
        """Add (or update) a warehouse."""
        from allocate.projection import add_warehouse

        self.in_db(lambda conn: add_warehouse(conn, code, name or code, province, city, priority))
        say(f"warehouse {code} ({province} {city}) saved")

    def warehouses_load(self, path: YamlFile) -> None:
        """Add or update every warehouse of a YAML file, all or none.

        Each entry under `warehouses:` has code, name, province, city and
        optionally address, latitude + longitude, priority (lower ships first;
        100), active (true) and carriers (e.g. [ZTO, SF]).
        Warehouses not in the file stay as they are.
        """
        from allocate.inventory import parse_warehouses, save_warehouses

        specs = parse_warehouses(read_text(path))
        new = self.in_db(lambda conn: save_warehouses(conn, specs))
        say(f"{len(specs)} warehouse(s) loaded from {path.name}: {new} new, "
            f"{len(specs) - new} updated")

    def warehouses_list(self, as_json: JsonFlag = False) -> None:
        """Warehouses in priority order, with their carriers, SKUs and units available."""
        from allocate.inventory import list_warehouses

        rows = self.in_db(list_warehouses)
        if as_json:
            self.print_json(rows)
            return
        for r in rows:
            where = (f"({r['latitude']}, {r['longitude']})" if r["latitude"] is not None
                     else "(city centre)")
            typer.echo(f"{r['code']:<10} {r['name']}  {r['province']} {r['city']} {where}  "
                       f"priority {r['priority']}  {'active' if r['active'] else 'INACTIVE'}  "
                       f"carriers {','.join(r['carriers']) or '-'}  {r['skus']} SKU(s)  "
                       f"{r['available']} available")
        say(f"{len(rows)} warehouse(s)")

    def stock_set(
        self, warehouse: str, sku: str, qty: Units,
        safety: Annotated[int | None, typer.Option(
            min=0, max=1_000_000_000, help="Also set the safety stock: fewer available units "
            "raise one low_stock alert.")] = None,
        reason: Annotated[str | None, typer.Option(help="Why, for the stock ledger.")] = None,
    ) -> None:
        """Set units on hand of a SKU in a warehouse (reserved units stay reserved)."""
        from allocate.inventory import set_level

        events = self.change(lambda conn, now: set_level(
            conn, warehouse, sku, qty, safety=safety, reason=reason, at=now, source="cli",
            key=f"set:{uuid.uuid4()}"))
        say(f"{warehouse}/{sku}: on hand {qty}, available {events[0].available}")

    def stock_adjust(
        self, warehouse: str, sku: str,
        delta: Annotated[int, typer.Argument(help="Units to add (5) or remove (-3).")],
        reason: Annotated[str, typer.Option(help="Why, for the stock ledger, e.g. 'damaged'.")],
    ) -> None:
        """Add or remove units on hand; never below the units reserved for orders."""
        from allocate.inventory import adjust_level

        events = self.change(lambda conn, now: adjust_level(
            conn, warehouse, sku, delta, reason, at=now, source="cli",
            key=f"adjust:{uuid.uuid4()}"))
        say(f"{warehouse}/{sku}: on hand {delta:+d}, available {events[0].available}")

    def stock_safety(
        self, warehouse: str, sku: str,
        qty: Annotated[int, typer.Argument(min=0, max=1_000_000_000, help="Safety stock units")],
    ) -> None:
        """Set the safety stock of a stocked SKU: below it, one low_stock alert per crossing."""
        from allocate.inventory import set_safety

        self.change(lambda conn, now: set_safety(conn, warehouse, sku, qty, at=now,
                                                 source="cli"))
        say(f"{warehouse}/{sku}: safety stock {qty}")

    def stock_import(
        self, path: CsvFile,
        encoding: Annotated[str, typer.Option(help="e.g. gb18030 for Excel exports")] = "utf-8",
    ) -> None:
        """Set on hand (and safety stock) from a CSV file, all rows or none.

        Columns: warehouse,sku,on_hand[,safety_stock] with a header line.
        Every row is checked first; one bad row refuses the whole file.
        """
        from allocate.inventory import import_levels, parse_stock_csv

        levels = parse_stock_csv(read_text(path, encoding))
        self.change(lambda conn, now: import_levels(
            conn, levels, batch=f"import:{uuid.uuid4()}", at=now, source=f"import:{path.name}"))
        say(f"{len(levels)} stock level(s) set from {path.name}")

    def stock_show(
        self,
        warehouse: Annotated[str | None, typer.Option(help="Only this warehouse.")] = None,
        sku: Annotated[str | None, typer.Option(help="Only this SKU.")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Stock per warehouse and SKU: on hand, reserved, available, safety, defective."""
        from allocate.inventory import list_stock

        self.show(self.in_db(lambda conn: list_stock(conn, warehouse, sku)), as_json)

    def stock_low(self, as_json: JsonFlag = False) -> None:
        """SKUs whose available units are below their safety stock."""
        from allocate.inventory import list_stock

        self.show(self.in_db(lambda conn: list_stock(conn, only_low=True)), as_json)

    def show(self, rows: list[dict[str, Any]], as_json: bool) -> None:
        if as_json:
            self.print_json(rows)
            return
        for r in rows:
            typer.echo(f"{r['warehouse']:<10} {r['sku']:<24} on hand {r['on_hand']:>6}  "
                       f"reserved {r['reserved']:>6}  available {r['available']:>6}  "
                       f"safety {r['safety_stock']:>6}  defective {r['defective']:>4}"
                       + ("  LOW" if r["available"] < r["safety_stock"] else ""))
        say(f"{len(rows)} stock row(s)")


def register(warehouses: typer.Typer, stock: typer.Typer, commands: InventoryCommands) -> None:
    """Attach the commands to the CLI's `warehouses` and `stock` groups."""
    warehouses.command("add")(commands.warehouses_add)
    warehouses.command("load")(commands.warehouses_load)
    warehouses.command("list")(commands.warehouses_list)
    stock.command("set")(commands.stock_set)
    stock.command("adjust", context_settings=ANY_NUMBER)(commands.stock_adjust)
    stock.command("safety")(commands.stock_safety)
    stock.command("import")(commands.stock_import)
    stock.command("show")(commands.stock_show)
    stock.command("low")(commands.stock_low)
