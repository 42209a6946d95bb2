"""The fault harness's checks: the drained projection and topics against the input log.

Each check counts violations; every count must be 0. The SQL reads the projection, the topic
reads go from offset 0 to each partition's end.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition
from sqlalchemy import Engine, text

from bench.faults_load import SCARCE_STOCK, Input, Load, valid_ids
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.supervisor import pipeline_lag
from schemas.errors import TransientError
from schemas.topics import DLQ, NOTIFIED

# Statuses an order may rest in once everything has drained; `paid` means allocate never saw it.
SETTLED = {"allocated", "approval_hold", "backordered", "review_hold", "shipped", "delivered",
           "completed", "cancelled", "refunded", "return_requested", "returned", "duplicate"}


@dataclass(frozen=True)
class Check:
    """One line of the result table: what was checked, over how many, how many violations."""

    name: str
    checked: int
    violations: int
    example: str = ""

    @property
    def ok(self) -> bool:
        return self.violations == 0


def read_topic(bootstrap: str, topic: str, partitions: int) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) of a topic, from offset 0 to each partition's end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "orderhub-fault-reader",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    out: list[tuple[bytes | None, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        done: set[int] = set()
        deadline = time.monotonic() + 60
        while len(done) < partitions:
            if time.monotonic() > deadline:
                raise TransientError(f"reading {topic} did not reach its end in 60 s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.add(int(msg.partition() or 0))
                    continue
                raise TransientError(f"reading {topic}: {error}")
            out.append((msg.key(), msg.value() or b""))
    finally:
        consumer.close()
    return out


def _rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql)).all()]


def _ex(items: Sequence[object]) -> str:
    return ", ".join(map(str, items[:3]))


def run_checks(settings: Settings, endpoints: Endpoints, engine: Engine, load: Load,
               hook_events: Sequence[Mapping[str, str]]) -> list[Check]:
    """Every check of issue 8 against the input log."""
    status = {str(i): str(s) for i, s in _rows(engine, "SELECT id, status FROM orders")}
    checks = [
        *lost_and_extra(load, status),
        *_outcomes(engine, load, status),
        _double_reservations(engine),
        *oversold(engine, load.stock),
        both_halves_went_on(load, status),
        _suspects_in_review(engine, load),
        *_notifications(engine, settings, endpoints, hook_events),
        _malformed_in_dlq(engine, settings, endpoints, load),
        _offsets_at_end(settings, endpoints),
    ]
    return checks


def lost_and_extra(load: Load, status: Mapping[str, str]) -> list[Check]:
    """Orders of the input log missing or stuck before allocate; orders nobody sent."""
    expected = valid_ids(load.logged)
    lost = sorted(i for i in expected if status.get(i) not in SETTLED)
    extra = sorted(set(status) - set(expected))
    return [Check("lost orders (missing, or never past `paid`)", len(expected), len(lost),
                  _ex([f"{i}:{status.get(i)}" for i in lost])),
            Check("orders that are not in the input log", len(status), len(extra), _ex(extra))]


def _outcomes(engine: Engine, load: Load, status: Mapping[str, str]) -> list[Check]:
    """High-value orders held for approval, the scarce SKU never over-promised, status updates
    and returns applied."""
    kinds: dict[str, list[Input]] = {}
    for i in load.logged:
        kinds.setdefault(i.kind, []).append(i)
    high = {i.order_id for i in kinds.get("high_value", [])}
    not_held = sorted(f"{o}:{status.get(str(o))}" for o in high
                      if status.get(str(o)) != "approval_hold")
    scarce = {str(i.order_id) for i in kinds.get("stock_out", [])}
    got = Counter(status.get(o) for o in scarce)
    wrong = got["allocated"] != min(SCARCE_STOCK, len(scarce)) or \
        got["backordered"] != len(scarce) - got["allocated"]
    final = {"shipped": {"shipped", "return_requested", "refunded"}, "cancelled": {"cancelled"}}
    updates = kinds.get("status_update", [])
    unapplied = sorted(f"{i.order_id}:{i.detail}->{status.get(str(i.order_id))}" for i in updates
                       if status.get(str(i.order_id)) not in final[i.detail])
    opened = {str(r[0]) for r in _rows(engine, "SELECT order_id FROM returns")}
    returns = {str(i.order_id) for i in kinds.get("return", [])}
    unopened = sorted(returns - opened)
    return [
        Check("high-value orders not on approval_hold", len(high), len(not_held),
              _ex(not_held)),
        Check(f"stock-out orders not split {SCARCE_STOCK} allocated / rest backordered",
              len(scarce), int(wrong), json.dumps(dict(got)) if wrong else ""),
        Check("status updates (shipped, cancelled) not applied", len(updates), len(unapplied),
              _ex(unapplied)),
        Check("refunds after shipping without a return opened", len(returns), len(unopened),
              _ex(unopened)),
    ]


def _double_reservations(engine: Engine) -> Check:
    rows = _rows(engine, """
        SELECT a.order_id, a.units, l.units FROM
          (SELECT order_id, sum(quantity) AS units FROM allocations GROUP BY order_id) a
          JOIN (SELECT order_id, sum(quantity) AS units FROM order_lines GROUP BY order_id) l
          USING (order_id) WHERE a.units > l.units""")
    total = _rows(engine, "SELECT count(DISTINCT order_id) FROM allocations")[0][0]
    return Check("duplicated orders (units reserved twice for one order)", int(str(total)),
                 len(rows), _ex(rows))


def oversold(engine: Engine, initial: Mapping[str, int]) -> list[Check]:
    allocated = _rows(engine, "SELECT sku, sum(quantity) FROM allocations GROUP BY sku")
    over = [(s, q, initial.get(str(s), 0)) for s, q in allocated
            if int(str(q)) > initial.get(str(s), 0)]
    negative = _rows(engine, "SELECT warehouse, sku, on_hand, reserved, available FROM stock "
                             "WHERE available < 0 OR reserved < 0 OR reserved > on_hand "
                             "OR on_hand <> reserved + available")
    stock_rows = _rows(engine, "SELECT count(*) FROM stock")[0][0]
    return [Check("units oversold (allocated > stock put in)", len(allocated), len(over),
                  _ex(over)),
            Check("stock rows with available < 0 or reserved > on hand", int(str(stock_rows)),
                  len(negative), _ex(negative))]


def both_halves_went_on(load: Load, status: Mapping[str, str]) -> Check:
    both = [p for p in load.pairs
            if status.get(p[0]) not in ("review_hold", "duplicate", "cancelled")
            and status.get(p[1]) not in ("review_hold", "duplicate", "cancelled")]
    return Check("suspected duplicates of which both went on", len(load.pairs), len(both),
                 _ex(both))


def _suspects_in_review(engine: Engine, load: Load) -> Check:
    queued = {str(r[0]) for r in _rows(engine, "SELECT order_id FROM review_queue")}
    missing = [p for p in load.pairs if not (set(p) & queued)]
    return Check("suspected duplicates not in the review queue", len(load.pairs), len(missing),
                 _ex(missing))


def _notifications(engine: Engine, settings: Settings, endpoints: Endpoints,
                   hook_events: Sequence[Mapping[str, str]]) -> list[Check]:
    keys: dict[tuple[str, str], set[str]] = {}
    for e in hook_events:
        keys.setdefault((e["order_id"], e["event"]), set()).add(e["event_id"])
    twice = sorted(k for k, ids in keys.items() if len(ids) > 1)
    rows = _rows(engine, "SELECT order_id, event, channel, count(*) FROM notifications "
                         "GROUP BY 1, 2, 3 HAVING count(*) > 1")
    total = int(str(_rows(engine, "SELECT count(*) FROM notifications")[0][0]))
    unsent = _rows(engine, "SELECT order_id, event, state FROM notifications "
                           "WHERE state NOT IN ('sent', 'skipped')")
    topic = NOTIFIED.full_name(settings.kafka.topic_prefix)
    told = Counter()  # type: Counter[tuple[str, str, str]]
    for _k, v in read_topic(endpoints.bootstrap, topic, settings.kafka.partitions):
        n = json.loads(v)
        told[(n["order_id"], n["event"], n["channel"])] += 1
    sent = {(str(o), str(e), str(c)) for o, e, c in _rows(
        engine, "SELECT order_id, event, channel FROM notifications WHERE state = 'sent'")}
    silent = sorted(sent - set(told))
    return [
        Check("duplicate buyer notifications (two event ids for one order × event at the "
              "receiver)", len(keys), len(twice), _ex(twice)),
        Check("send-log rows for one order × event × channel beyond the first", total,
              len(rows), _ex(rows)),
        Check("notifications neither sent nor skipped", total, len(unsent), _ex(unsent)),
        Check("sent notifications without BuyerNotified on orders.notified", len(sent),
              len(silent), _ex(silent)),
    ]


def _malformed_in_dlq(engine: Engine, settings: Settings, endpoints: Endpoints,
                      load: Load) -> Check:
    rows = {str(k): str(m) for k, m in _rows(
        engine, "SELECT key, message FROM dead_letters WHERE topic LIKE '%orders.raw'")}
    topic = DLQ.full_name(settings.kafka.topic_prefix)
    on_topic = {json.loads(v).get("key") for _k, v in
                read_topic(endpoints.bootstrap, topic, settings.kafka.partitions)}
    missing = [k for k in load.malformed
               if not rows.get(k, "").strip() or k not in on_topic]
    return Check("malformed inputs not in the DLQ with a reason", len(load.malformed),
                 len(missing), _ex(missing))


def _offsets_at_end(settings: Settings, endpoints: Endpoints) -> Check:
    lags = pipeline_lag(settings, endpoints)
    behind = [f"{p.group} {p.topic}[{p.partition}] {p.committed}/{p.end}" for p in lags
              if p.lag]
    return Check("partitions whose committed offset is not at the end", len(lags), len(behind),
                 _ex(behind))


def table(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'checked':>7}  {'violations':>10}",
             "-" * (width + 21)]
    for c in checks:
        line = f"{c.name:<{width}}  {c.checked:>7}  {c.violations:>10}"
        lines.append(line + (f"   e.g. {c.example}" if c.example else ""))
    return "\n".join(lines)


def inputs_by_kind(inputs: Sequence[Input]) -> dict[str, int]:
    return dict(Counter(i.kind for i in inputs))
