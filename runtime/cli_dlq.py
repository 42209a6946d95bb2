"""`orderhub dlq list|show|replay`: read dead letters and send them back once the cause is fixed.

A replay produces each letter's original bytes, under its original key, to its original topic
and partition (so per-key order holds whichever client wrote the topic), waits for the broker's
acknowledgements, and only then counts the replay in `dead_letters` (`replays`, `replayed_at`).
The stage consumes the message again like any other: it is idempotent by natural keys, so a
message that did get through once changes nothing, and one that fails again becomes a new dead
letter (its new offset) while this one stays as it was.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from sqlalchemy import Connection, text

from runtime.cli_kit import CliHelpers, JsonFlag, Registered
from runtime.settings import Settings
from schemas.errors import ConfigurationError, TransientError

dlq_app = typer.Typer(help="Inspect dead letters and replay them once the cause is fixed.",
                      no_args_is_help=True)
COLUMNS = ("id, stage, topic, partition, \"offset\", key, error_class, message, recorded_at, "
           "replays, replayed_at")
ACK_TIMEOUT_S = 60.0


_cli = Registered()


def register(app: typer.Typer, helpers: CliHelpers) -> None:
    """Attach `dlq` to the CLI, with its helpers."""
    _cli.set(helpers)
    app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    stage: Annotated[str | None, typer.Option(help="Only this stage's letters.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters, newest first, with the reason each input was refused."""
    rows = _cli().in_db(lambda conn: _listing(conn, stage, limit))
    if as_json:
        _cli().print_json(rows)
        return
    for r in rows:
        replayed = f"  (replayed {r['replays']}×)" if r["replays"] else ""
        typer.echo(f"{r['id']:>6} {r['stage']:<10} {r['topic']}[{r['partition']}]@{r['offset']}"
                   f"  {r['error_class']}: {r['message']}{replayed}")
    _cli().say(f"{len(rows)} dead letter(s)"
                + ("; `orderhub dlq show ID` for one, with its bytes" if rows else ""))


@dlq_app.command("show")
def dlq_show(letter_id: Annotated[int, typer.Argument(metavar="ID")],
             as_json: JsonFlag = False) -> None:
    """One dead letter: where it came from, why, its replays and its original bytes."""
    [row] = _cli().in_db(lambda conn: _by_ids(conn, [letter_id]))
    original: bytes = row.pop("original")
    shown = {**row, **_readable(original)}
    if as_json:
        _cli().print_json(shown)
        return
    for key in ("id", "stage", "topic", "partition", "offset", "key", "error_class", "message",
                "recorded_at", "replays", "replayed_at", "original_encoding"):
        typer.echo(f"{key:>17}: {shown[key]}")
    typer.echo(shown["original"])


REPLAY_HELP = (
    "Send dead letters back to their original topic once the cause is fixed.\n\n"
    "Each original value goes back with its original key to its original topic and partition; "
    "once the broker acknowledged all of them, each letter's `replays` count goes up. Fix the "
    "cause first (mapper, settings, master data) and restart the stage.\n\n"
    "The stage is idempotent, so replaying a message that did get through is harmless. A "
    "replayed message that fails again is dead-lettered again as a NEW letter (with its new "
    "offset); the replayed one keeps its count.")


@dlq_app.command("replay", help=REPLAY_HELP)
def dlq_replay(
    ids: Annotated[list[int] | None, typer.Argument(
        metavar="ID", help="Dead letters to replay (see `orderhub dlq list`).")] = None,
    stage: Annotated[str | None, typer.Option(
        help="Instead of ids: every letter of this stage not replayed yet.")] = None,
    error_class: Annotated[str | None, typer.Option(
        help="With --stage: only letters of this error class.")] = None,
) -> None:
    letters = _cli().in_db(lambda conn: _select(conn, ids or [], stage, error_class))
    if not letters:
        _cli().say(f"nothing to replay: every letter of stage {stage} was replayed already"
                    + (f" or none is {error_class}" if error_class else ""))
        return
    s = _cli().settings()
    targets = [_target(r, s) for r in letters]
    _produce(s, [(t, r) for t, r in zip(targets, letters, strict=True)])
    _cli().in_db(lambda conn: _count_replays(conn, [r["id"] for r in letters]))
    for topic, r in zip(targets, letters, strict=True):
        typer.echo(f"replayed {r['id']}: {r['stage']} {r['error_class']} → "
                   f"{topic}[{r['partition']}] key {r['key']!r}")
    _cli().say(f"{len(letters)} dead letter(s) replayed; the stage consumes them again "
                "(a failure becomes a new letter: `orderhub dlq list`)")


def _listing(conn: Connection, stage: str | None, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(text(
        f"SELECT {COLUMNS} FROM dead_letters "  # noqa: S608 (fixed columns; values are bound)
        "WHERE (CAST(:stage AS text) IS NULL OR stage = :stage) ORDER BY id DESC LIMIT :n"),
        {"stage": stage, "n": limit}).mappings()]


def _by_ids(conn: Connection, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = [dict(r) for r in conn.execute(text(
        f"SELECT {COLUMNS}, original FROM dead_letters "  # noqa: S608 (fixed columns)
        "WHERE id = ANY(:ids) ORDER BY id"), {"ids": list(ids)}).mappings()]
    missing = sorted(set(ids) - {r["id"] for r in rows})
    if missing:
        raise ConfigurationError(
            f"no dead letter {', '.join(map(str, missing))}; see `orderhub dlq list`")
    for r in rows:
        r["original"] = bytes(r["original"])
    return rows


def _select(conn: Connection, ids: Sequence[int], stage: str | None,
            error_class: str | None) -> list[dict[str, Any]]:
    if bool(ids) == (stage is not None):
        raise ConfigurationError("name the dead letters to replay: `orderhub dlq replay ID "
                                 "[ID ...]` or `orderhub dlq replay --stage STAGE`, not both")
    if error_class is not None and stage is None:
        raise ConfigurationError("--error-class narrows --stage: add --stage STAGE")
    if ids:
        return _by_ids(conn, ids)
    assert stage is not None
    known = {r[0] for r in conn.execute(text("SELECT DISTINCT stage FROM dead_letters"))}
    if stage not in known:
        raise ConfigurationError(f"no dead letters of stage {stage!r}; stages with dead "
                                 f"letters: {', '.join(sorted(known)) or 'none'}")
    pending = [r[0] for r in conn.execute(text(
        "SELECT id FROM dead_letters WHERE stage = :stage AND replays = 0 "
        "AND (CAST(:error_class AS text) IS NULL OR error_class = :error_class) ORDER BY id"),
        {"stage": stage, "error_class": error_class})]
    return _by_ids(conn, pending) if pending else []


def _target(letter: dict[str, Any], settings: Settings) -> str:
    """The letter's topic if it is one of this deployment's registry topics, else refuse."""
    from schemas.topics import TOPICS

    prefix = settings.kafka.topic_prefix
    names = {spec.full_name(prefix) for spec in TOPICS}
    if letter["topic"] in names:
        return str(letter["topic"])
    if letter["stage"] == "ingest":
        raise ConfigurationError(
            f"dead letter {letter['id']} was refused by ingest before it reached a topic (from "
            f"{letter['topic']}): it cannot be replayed; fix the source and ingest it again")
    raise ConfigurationError(
        f"dead letter {letter['id']} came from {letter['topic']!r}, not a topic of this "
        f"deployment (topic prefix {prefix!r}); nothing was replayed")


def _produce(settings: Settings, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Produce to the original partitions and wait until the broker acknowledged all."""
    from confluent_kafka import KafkaError, Message

    from runtime.kafka import make_producer
    from runtime.services import discover

    producer = make_producer(discover(settings).bootstrap, "orderhub-dlq-replay")
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for topic, r in items:
        key = None if r["key"] is None else str(r["key"]).encode()
        while True:
            try:
                producer.produce(topic, value=r["original"], key=key, partition=r["partition"],
                                 on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain, then retry
                producer.poll(0.1)
    remaining = producer.flush(ACK_TIMEOUT_S)
    if errors or remaining:
        raise TransientError(f"{len(errors) + remaining} replayed message(s) not acknowledged "
                             f"by the broker ({errors[0] if errors else 'timed out'}); nothing "
                             "was counted as replayed, run the same command again")


def _count_replays(conn: Connection, ids: Sequence[int]) -> None:
    conn.execute(text("UPDATE dead_letters SET replays = replays + 1, replayed_at = now() "
                      "WHERE id = ANY(:ids)"), {"ids": list(ids)})


def _readable(original: bytes) -> dict[str, str]:
    """The original bytes as UTF-8 text when they decode, else base64."""
    try:
        return {"original": original.decode("utf-8"), "original_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"original": base64.b64encode(original).decode("ascii"),
                "original_encoding": "base64"}

