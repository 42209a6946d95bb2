"""`orderhub approvals …` and `orderhub returns …`: the people's side of allocation.

Approve/reject travel as `OrderStatusChanged` on orders.status (source `approval:<name>`) and the
allocate stage applies them, like review decisions. Returns are warehouse work done at a desk:
receive and grade change stock at once (one transaction, one ledger row per SKU), then the stock
events go to inventory.events and the final status `returned` to orders.status.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import typer

from runtime.cli_kit import CliHelpers, JsonFlag, Registered
from runtime.settings import Settings
from schemas.errors import ConfigurationError
from schemas.events import Event, OrderStatusChanged
from schemas.order import OrderStatus

approvals_app = typer.Typer(help="Orders waiting for a manager.", no_args_is_help=True)
returns_app = typer.Typer(help="Returns after shipment, and their QC.", no_args_is_help=True)


_cli = Registered()


def register(app: typer.Typer, helpers: CliHelpers) -> None:
    """Attach `approvals` and `returns` to the CLI, with its own helpers (not imported from
    runtime.cli, which `python -m runtime.cli` would load a second time)."""
    _cli.set(helpers)
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(returns_app, name="returns")


def settings() -> Settings:
    return _cli().settings()


def _in_db(work: Callable[[Any], Any]) -> Any:
    return _cli().in_db(work)


def print_json(value: Any) -> None:
    _cli().print_json(value)


def say(message: str) -> None:
    _cli().say(message)


def _now() -> datetime:
    from schemas.base import SHANGHAI

    return datetime.now(SHANGHAI)


def _produce(items: list[tuple[Any, str, Event]]) -> None:
    """Send (topic spec, key, event) after the database work committed."""
    from ingest.agent import produce_all
    from runtime.kafka import make_producer
    from runtime.services import discover

    if not items:
        return
    s = settings()
    producer = make_producer(discover(s).bootstrap, "orderhub-ops")
    produce_all(producer, s, [(spec.full_name(s.kafka.topic_prefix), key,
                               event.model_dump_json().encode()) for spec, key, event in items])


@approvals_app.command("list")
def approvals_list(
    everything: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Orders held for approval, with their stock reserved (oldest first)."""
    from allocate.lifecycle import approvals_list as rows_of

    rows = _in_db(lambda conn: rows_of(conn, everything))
    if as_json:
        print_json(rows)
        return
    for r in rows:
        decided = f"  {r['state']} by {r['decided_by']}" if r["state"] != "open" else ""
        typer.echo(f"{r['order_id']}  ¥{r['paid_cny']}  {'; '.join(r['reasons'])}  "
                   f"raised {r['raised_at'].isoformat()}{decided}")
    say(f"{len(rows)} approval(s)" + ("" if everything else " open"))


def _approval_decision(order_id: str, approve: bool, by: str, reason: str | None) -> None:
    from allocate.lifecycle import approval
    from schemas.topics import STATUS

    if not by.strip():
        raise ConfigurationError("--by must name the person deciding")
    wanted = "approved" if approve else "rejected"

    def check(conn: Any) -> OrderStatusChanged | None:
        item = approval(conn, order_id)
        if item is None:
            raise ConfigurationError(f"{order_id} is not waiting for approval; see "
                                     "`orderhub approvals list`")
        if item["state"] == wanted:
            return None
        if item["state"] != "open":
            raise ConfigurationError(f"{order_id} was already {item['state']}")
        return OrderStatusChanged(
            order_id=order_id, status=OrderStatus.ALLOCATED if approve else OrderStatus.CANCELLED,
            at=_now(), source=f"approval:{by}", reason=reason or wanted)

    event = _in_db(check)
    if event is None:
        say(f"{order_id} was already {wanted}; nothing to do")
        return
    _produce([(STATUS, order_id, event)])
    say(f"{order_id}: {wanted} — sent on orders.status; allocate applies it")


@approvals_app.command("approve")
def approvals_approve(
    order_id: str,
    by: Annotated[str, typer.Option(help="Who approves.")],
    reason: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
) -> None:
    """Let the order ship from the stock already reserved for it."""
    _approval_decision(order_id, True, by, reason)


@approvals_app.command("reject")
def approvals_reject(
    order_id: str,
    by: Annotated[str, typer.Option(help="Who rejects.")],
    reason: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
) -> None:
    """Cancel the order and give its reserved stock back."""
    _approval_decision(order_id, False, by, reason)


@returns_app.command("list")
def returns_list(
    everything: Annotated[bool, typer.Option("--all", help="Graded ones too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Returns waiting to be received or graded."""
    from allocate.lifecycle import returns_list as rows_of

    rows = _in_db(lambda conn: rows_of(conn, everything))
    if as_json:
        print_json(rows)
        return
    for r in rows:
        units = ", ".join(f"{ln['sku']}×{ln['quantity']}@{ln['warehouse']}" for ln in r["lines"])
        typer.echo(f"{r['order_id']}  {r['state']}{' ' + r['grade'] if r['grade'] else ''}  "
                   f"{units}  requested {r['requested_at'].isoformat()}")
    say(f"{len(rows)} return(s)")


@returns_app.command("receive")
def returns_receive(order_id: str) -> None:
    """The parcel is back in the warehouse, waiting for QC."""
    from allocate.lifecycle import receive_return
    from schemas.topics import STATUS

    at = _now()
    outcome = _in_db(lambda conn: receive_return(conn, order_id, at))
    if outcome == "received":  # the buyer hears about it (notify's return_received)
        _produce([(STATUS, order_id, OrderStatusChanged(
            order_id=order_id, status=OrderStatus.RETURN_REQUESTED, at=at,
            source="warehouse", reason="return received", milestone="return_received"))])
    say(f"return {order_id}: {outcome}")


@returns_app.command("qc")
def returns_qc(
    order_id: str,
    grade: Annotated[str, typer.Option(help="A: sellable again, B: defective, C: scrapped.")],
    by: Annotated[str, typer.Option(help="Who graded it.")],
) -> None:
    """Grade a received return; its stock moves accordingly and the order becomes `returned`."""
    from allocate.lifecycle import grade_return
    from schemas.topics import INVENTORY, STATUS

    letter = grade.strip().upper()
    if letter not in ("A", "B", "C"):
        raise ConfigurationError(f"--grade must be A, B or C, got {grade!r}")
    if not by.strip():
        raise ConfigurationError("--by must name the person grading")
    graded: Literal["A", "B", "C"] = letter  # type: ignore[assignment]
    at = _now()
    events = _in_db(lambda conn: grade_return(conn, order_id, graded, by, at, f"qc:{by}"))
    if not events:
        say(f"return {order_id} was already graded {letter}; nothing to do")
        return
    status = OrderStatusChanged(order_id=order_id, status=OrderStatus.RETURNED, at=at,
                                source=f"qc:{by}", reason=f"QC grade {letter}")
    _produce([*((INVENTORY, e.sku, e) for e in events), (STATUS, order_id, status)])
    say(f"return {order_id}: graded {letter}; stock updated, order returned")
