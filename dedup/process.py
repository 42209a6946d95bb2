"""Pure dedup decisions: exact duplicates by id, suspected duplicates by fingerprint and window.

Exact: the same canonical id is one order; its first version's replay (same delivery) is emitted
again so downstream stays idempotent, another delivery of that same version is dropped, and a
different version is an update.

Suspected: two different ids whose fingerprints match — same region and the same multiset of
merchant SKUs × quantities (the blocking `key`), `paid_cny` within the tolerance, and, where both
orders show them, the same visible phone tail and name mark — and whose event times (paid_at,
else created_at; never arrival time) lie within the window. Of a matching group, the earliest
in event time goes on at once; every later one is held for review, whichever arrived first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, TypeVar

from schemas.order import Order, OrderStatus

Verdict = Literal["unique", "update", "duplicate"]
KEY_BYTES = 16  # the first 128 bits of the blocking key's sha256: what dedup_fingerprints stores
DIGEST_BYTES = 16  # the first 128 bits of a version's sha256: accepted_orders.first_digest
DELIVERY_BYTES = 8  # accepted_orders.first_delivery: compared for equality only
# Orders that can no longer ship are never compared: holding them would protect nothing.
NOT_COMPARED = frozenset({OrderStatus.CANCELLED, OrderStatus.REFUNDED, OrderStatus.DUPLICATE})
CIPHER = re.compile(r"^[$#~]")  # ciphertext: Douyin $$ and ##, PDD $ and ~, Taobao ~
TRAILING_DIGITS = re.compile(r"(\d{1,4})$")


D = TypeVar("D", str, bytes)
V = TypeVar("V", str, bytes)


def classify(first_digest: D | None, first_delivery: V | None, digest: D, delivery: V) -> Verdict:
    """`unique` for the first version (and replays of its own delivery), `duplicate` for
    another delivery of that same version, `update` for a different version. Digests and
    deliveries are compared as stored (`stored_digest`, `delivery_mark`), never mixed."""
    if first_digest is None:
        return "unique"
    if first_digest != digest:
        return "update"
    if first_delivery is None or first_delivery == delivery:
        return "unique"
    return "duplicate"


def stored_digest(hex_digest: str) -> bytes:
    """What accepted_orders keeps of a version's hex sha256 (`normalize.projection.digest`)."""
    return bytes.fromhex(hex_digest)[:DIGEST_BYTES]


def delivery_mark(delivery_id: str) -> bytes:
    """What accepted_orders keeps of a delivery id: a hash, only ever compared for equality.
    Two deliveries of one id colliding would read as a replay (re-emitted, idempotent
    downstream), never as a dropped version. Migration 0006 computes the same in SQL."""
    return hashlib.sha256(delivery_id.encode()).digest()[:DELIVERY_BYTES]


def lock_id(key: bytes) -> int:
    """The advisory-lock id (signed bigint) of a fingerprint key: its first 8 bytes."""
    return int.from_bytes(key[:8], "big", signed=True)


@dataclass(frozen=True)
class Fingerprint:
    order_id: str
    key: bytes  # KEY_BYTES of sha256(region + merchant SKUs x quantities)
    event_at: datetime
    paid_cny: Decimal
    phone_tail: str | None
    name_mark: str | None
    channel: str

    @property
    def rank(self) -> tuple[datetime, str]:
        """Earlier event time first; the id breaks ties so every worker picks the same one."""
        return (self.event_at, self.order_id)


@dataclass(frozen=True)
class Suspect:
    """Hold `order_id` as a probable duplicate of `duplicate_of`."""

    order_id: str
    duplicate_of: str
    matched_fields: tuple[str, ...]
    reason: str


def fingerprint(order: Order) -> Fingerprint | None:
    """The comparable part of an order, or None when it has nothing comparable (no region)."""
    if order.status in NOT_COMPARED:
        return None
    r = order.recipient
    if r is None or not (r.province or r.city):
        return None
    units: dict[str, int] = {}
    for line in order.lines:
        sku = line.sku or f"#{line.channel_sku_id or line.title}"
        units[sku] = units.get(sku, 0) + line.quantity
    # JSON, not joined text: a SKU or city containing a separator cannot forge another basket.
    blocking = json.dumps([[r.country, r.province, r.city], sorted(units.items())],
                          ensure_ascii=False)
    key = hashlib.sha256(blocking.encode()).digest()[:KEY_BYTES]
    return Fingerprint(order.id, key, order.paid_at or order.created_at, order.paid_cny,
                       phone_tail(r.phone), name_mark(r.name), order.channel.value)


def phone_tail(phone: str | None) -> str | None:
    """The visible trailing digits (up to 4) of a plain or masked phone; None for ciphertext."""
    if not phone or CIPHER.match(phone):
        return None
    found = TRAILING_DIGITS.search(phone.strip())
    return found.group(1) if found else None


def name_mark(name: str | None) -> str | None:
    """The first character of a plain or masked name (`张*` → `张`); None for ciphertext."""
    if not name or CIPHER.match(name) or len(name) > 32:
        return None
    first = name.strip()[:1]
    return first if first and first != "*" else None


def matched_fields(a: Fingerprint, b: Fingerprint, window: timedelta, tolerance: Decimal
                   ) -> tuple[str, ...] | None:
    """Which fields make `a` and `b` look like one purchase, or None when they do not."""
    if a.order_id == b.order_id or a.key != b.key:
        return None
    if abs(a.event_at - b.event_at) > window or abs(a.paid_cny - b.paid_cny) > tolerance:
        return None
    fields = ["region", "skus", "paid_cny"]
    if a.phone_tail and b.phone_tail:
        short, long = sorted((a.phone_tail, b.phone_tail), key=len)
        if not long.endswith(short):
            return None
        fields.append("phone_tail")
    if a.name_mark and b.name_mark:
        if a.name_mark != b.name_mark:
            return None
        fields.append("name_mark")
    return tuple(fields)


@dataclass(frozen=True)
class Decision:
    hold_new: Suspect | None
    hold_earlier_arrivals: tuple[Suspect, ...]


def decide(
    new: Fingerprint, seen: Iterable[Fingerprint], reviewed: frozenset[str], window: timedelta,
    tolerance: Decimal,
) -> Decision:
    """What to do about `new`, given the fingerprints already seen and which of them are (or
    were) in the review queue.

    The earliest of the matching group (by event time, then id) goes on. If that is `new`, every
    later one that went on before it arrived is held now — unless a person already reviewed it;
    otherwise `new` is held as a duplicate of the earliest.
    """
    matches = [(fp, fields) for fp in seen
               if (fields := matched_fields(new, fp, window, tolerance)) is not None]
    if not matches:
        return Decision(None, ())
    first, fields = min(matches, key=lambda m: m[0].rank)
    if first.rank < new.rank:
        return Decision(_suspect(new, first, fields), ())
    later = tuple(_suspect(fp, new, f) for fp, f in sorted(matches, key=lambda m: m[0].rank)
                  if fp.order_id not in reviewed)
    return Decision(None, later)


def _suspect(held: Fingerprint, first: Fingerprint, fields: Sequence[str]) -> Suspect:
    gap = abs(held.event_at - first.event_at).total_seconds()
    reason = (f"same {', '.join(fields)} as {first.order_id} ({first.channel}), "
              f"{gap:.0f} s apart")
    return Suspect(held.order_id, first.order_id, tuple(fields), reason)
