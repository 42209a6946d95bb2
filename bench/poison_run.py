"""Valid orders with poison mixed in, through real stage workers; and what must hold afterwards."""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer
from sqlalchemy import Engine, text

from bench.offsets import group_lag, log_ends, stage_groups
from bench.poison_payloads import Poison
from bench.workers import Deadline, ensure_running, spawn, stop
from bench.workload import Orders, envelope, ingest_producer
from ingest.process import raw_key
from runtime.services import Endpoints
from runtime.settings import Settings
from schemas.errors import OrderhubError
from schemas.order import Channel, canonical_id
from schemas.topics import RAW

POLL_S = 0.05
STAGES = ("normalize", "dedup")
Where = tuple[str, int, int]
"""(topic, partition, offset) of one produced message."""


@dataclass(frozen=True)
class Sent:
    """A message to produce to orders.raw: a valid order's envelope or a poison message."""

    key: bytes | None
    value: bytes | None
    poison: Poison | None = None


@dataclass(frozen=True)
class Mixed:
    """What a run produced and measured: where each poison message landed, the valid orders'
    ids, and the seconds from the first produce until they were all accepted / all committed."""

    poison: dict[Where, Poison]
    valid: frozenset[str]
    valid_done_s: float
    lag0_s: float
    produce_s: float
    exited: dict[str, int | None] = field(default_factory=dict)

    @property
    def valid_rate(self) -> float:
        return len(self.valid) / self.valid_done_s


def messages(orders: Orders, poison: Sequence[Poison], seed: int) -> list[Sent]:
    """The valid envelopes and the poison, interleaved in a seeded order."""
    received = datetime.now(UTC)
    sent = [Sent(raw_key(e).encode(), e.model_dump_json().encode())
            for e in (envelope(shop, payload, received) for shop, payload in orders)]
    sent += [Sent(p.key, p.value, p) for p in poison]
    random.Random(seed).shuffle(sent)
    return sent


def produce(producer: Producer, topic: str, sent: Sequence[Sent], timeout_s: float = 120.0
            ) -> dict[Where, Poison]:
    """Produce everything (tombstones and null keys included), acknowledged; poison by offset."""
    landed: dict[Where, Poison] = {}
    errors: list[KafkaError] = []

    def report(item: Sent) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(err)
            elif item.poison is not None:
                landed[(topic, msg.partition() or 0, msg.offset() or 0)] = item.poison
        return on_delivery

    for item in sent:
        while True:
            try:
                producer.produce(topic, key=item.key, value=item.value, on_delivery=report(item))
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(timeout_s) or errors:
        raise OrderhubError(f"orders.raw refused {len(errors)} message(s): {errors[:1]}")
    return landed


def run_mixed(settings: Settings, endpoints: Endpoints, engine: Engine, orders: Orders,
              poison: Sequence[Poison], log_dir: Path, timeout_s: float, seed: int = 8) -> Mixed:
    """Start normalize and dedup, warm them up, produce the mix, wait until every valid order
    is accepted and every group has committed its inputs' ends."""
    warmup, measured = orders[:1], orders[1:]
    topic = RAW.full_name(settings.kafka.topic_prefix)
    valid = frozenset(canonical_id(Channel.SHOPIFY, str(p["id"])) for _s, p in measured)
    with ExitStack() as stack:
        procs = {name: spawn(name, settings, endpoints, log_dir) for name in STAGES}
        for proc in procs.values():
            stack.callback(stop, proc)
        producer = stack.enter_context(ingest_producer(endpoints.bootstrap))
        produce(producer, topic, messages(warmup, (), seed))
        _wait(lambda: _accepted(engine) >= len(warmup), procs, log_dir,
              Deadline(timeout_s, "warm-up"))
        deadline = Deadline(timeout_s, "the mixed run")
        started = time.perf_counter()
        landed = produce(producer, topic, messages(measured, poison, seed))
        produce_s = time.perf_counter() - started
        _wait(lambda: _accepted(engine) >= len(orders), procs, log_dir, deadline)
        valid_done_s = time.perf_counter() - started
        groups = stage_groups(settings, STAGES)
        inputs = sorted({t for topics in groups.values() for t in topics})
        ends = log_ends(endpoints.bootstrap, inputs, settings.kafka.partitions)
        _wait(lambda: group_lag(endpoints.bootstrap, groups, ends) == 0, procs, log_dir, deadline)
        lag0_s = time.perf_counter() - started
        exited = {name: proc.poll() for name, proc in procs.items()}
    return Mixed(landed, valid, valid_done_s, lag0_s, produce_s, exited)


def problems(engine: Engine, run: Mixed) -> list[str]:
    """Everything that should hold after a mixed run and does not; empty when all is well."""
    with engine.connect() as conn:
        letters = {(r.topic, r.partition, r.offset): (r.stage, r.message) for r in conn.execute(
            text('SELECT stage, topic, partition, "offset", message FROM dead_letters'))}
        accepted = set(conn.execute(text("SELECT order_id FROM accepted_orders")).scalars())
    found: list[str] = []
    missing = [(w, p) for w, p in run.poison.items() if w not in letters]
    found += [f"not dead-lettered: {p.category}/{p.variant} at {w}" for w, p in missing[:20]]
    found += [f"dead-lettered without a reason: {w}" for w, (_s, m) in letters.items()
              if not m.strip()]
    extra = [w for w in letters if w not in run.poison]
    found += [f"dead letter for a valid message at {w}: {letters[w]}" for w in extra[:20]]
    lost = sorted(run.valid - accepted)
    found += [f"{len(lost)} valid order(s) not accepted, e.g. {lost[:3]}"] if lost else []
    found += [f"stage {n} exited with {rc}" for n, rc in run.exited.items() if rc is not None]
    return found


def reasons(engine: Engine, run: Mixed) -> dict[str, dict[str, int]]:
    """Per poison category: how many dead letters of each error class."""
    with engine.connect() as conn:
        letters = {(r.topic, r.partition, r.offset): r.error_class for r in conn.execute(
            text('SELECT topic, partition, "offset", error_class FROM dead_letters'))}
    found: dict[str, Counter[str]] = {}
    for where, p in run.poison.items():
        found.setdefault(p.category, Counter())[letters.get(where, "(none)")] += 1
    return {c: dict(found[c].most_common()) for c in sorted(found)}


def _accepted(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM accepted_orders")).scalar_one())


def _wait(done: Callable[[], bool], procs: dict[str, subprocess.Popen[bytes]], log_dir: Path,
          deadline: Deadline) -> None:
    while not done():
        deadline.check()
        ensure_running(procs, log_dir)
        time.sleep(POLL_S)

