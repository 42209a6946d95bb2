"""`orderhub notifications …`: the send log, seen and worked by a person.

`list` shows what was sent, skipped, deferred or failed, with the reason; `retry` puts failed
sends back in the queue (same idempotency key, attempts from zero) once their cause is fixed:
an approved SMS template, a corrected signature, a buyer who subscribed. The notify worker's
sender picks them up within its poll interval.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from sqlalchemy import text

from runtime.cli_kit import CliHelpers, JsonFlag, Registered
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError

notifications_app = typer.Typer(help="Buyer notifications: the send log.", no_args_is_help=True)
STATES = ("pending", "sending", "sent", "failed", "skipped")
_cli = Registered()


def register(app: typer.Typer, helpers: CliHelpers) -> None:
    """Attach `notifications` to the CLI with the CLI's own helpers (runtime/cli_kit.py)."""
    _cli.set(helpers)
    app.add_typer(notifications_app, name="notifications")


@notifications_app.command("list")
def notifications_list(
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(STATES)}.")]
    = None,
    order: Annotated[str | None, typer.Option(help="Only this canonical order id.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Newest first: event, channel, provider, state, attempts and why."""
    in_db, print_json, say = _cli().in_db, _cli().print_json, _cli().say
    if state is not None and state not in STATES:
        raise ConfigurationError(f"--state must be one of {', '.join(STATES)}, got {state!r}")
    rows = in_db(lambda conn: [dict(r) for r in conn.execute(text(
        "SELECT id, order_id, event, channel, provider, state, attempts, due_at, sent_at, "
        "skip_reason, last_error FROM notifications WHERE (CAST(:s AS text) IS NULL OR state = :s) "
        "AND (CAST(:o AS text) IS NULL OR order_id = :o) ORDER BY id DESC LIMIT :n"),
        {"s": state, "o": order, "n": limit}).mappings()])
    if as_json:
        print_json(rows)
        return
    for r in rows:
        why = r["skip_reason"] or r["last_error"] or ""
        typer.echo(f"{r['id']:>8}  {r['order_id']}  {r['event']:<15} {r['channel']:<7} "
                   f"{r['provider'] or '-':<16} {r['state']:<8} x{r['attempts']}  {why}")
    say(f"{len(rows)} notification(s)")


@notifications_app.command("retry")
def notifications_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Send-log ids (see `list`).")] = None,
    all_failed: Annotated[bool, typer.Option("--failed", help="Every failed send.")] = False,
) -> None:
    """Queue failed sends again, with the same idempotency key and a fresh retry budget."""
    in_db, say = _cli().in_db, _cli().say
    if bool(ids) == all_failed:
        raise ConfigurationError("name the ids to retry, or pass --failed for every failed send")
    now = datetime.now(SHANGHAI)

    def work(conn: Any) -> list[int]:
        if ids:
            found = dict(conn.execute(text("SELECT id, state FROM notifications "
                                           "WHERE id = ANY(:ids)"), {"ids": ids}).all())
            unknown = sorted(set(ids) - set(found))
            if unknown:
                raise ConfigurationError(f"no notification {unknown}; see `orderhub "
                                         "notifications list`")
            not_failed = sorted(i for i, s in found.items() if s != "failed")
            if not_failed:
                raise ConfigurationError(f"only failed sends can be retried; {not_failed} "
                                         "are not failed")
        return [r[0] for r in conn.execute(text(
            "UPDATE notifications SET state = 'pending', attempts = 0, due_at = :now, "
            "finished_at = NULL, emitted_at = NULL, lease_until = NULL "
            "WHERE state = 'failed' AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(:ids)) "
            "RETURNING id"), {"now": now, "ids": ids or None}).all()]

    queued = in_db(work)
    say(f"{len(queued)} send(s) queued again; the notify worker sends them shortly")
