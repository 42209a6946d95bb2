"""The order status state machine: which canonical status may follow which."""

from __future__ import annotations

from datetime import datetime

from schemas.order import OrderStatus as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING_PAYMENT: frozenset({S.PAID, S.CANCELLED, S.DUPLICATE, S.REVIEW_HOLD}),
    S.PAID: frozenset(
        {S.REVIEW_HOLD, S.APPROVAL_HOLD, S.BACKORDERED, S.ALLOCATED, S.SHIPPED, S.DELIVERED,
         S.COMPLETED, S.CANCELLED, S.REFUNDED, S.DUPLICATE}
    ),
    S.REVIEW_HOLD: frozenset(
        {S.PAID, S.APPROVAL_HOLD, S.BACKORDERED, S.ALLOCATED, S.CANCELLED, S.REFUNDED, S.DUPLICATE}
    ),
    # A suspected duplicate found after the order went on is held again (its reservation is
    # released by allocate) as long as it has not shipped.
    S.APPROVAL_HOLD: frozenset(
        {S.ALLOCATED, S.BACKORDERED, S.CANCELLED, S.REFUNDED, S.REVIEW_HOLD}),
    S.BACKORDERED: frozenset(
        {S.ALLOCATED, S.APPROVAL_HOLD, S.CANCELLED, S.REFUNDED, S.REVIEW_HOLD}),
    S.ALLOCATED: frozenset(
        {S.SHIPPED, S.DELIVERED, S.COMPLETED, S.CANCELLED, S.REFUNDED, S.REVIEW_HOLD}),
    S.SHIPPED: frozenset({S.DELIVERED, S.COMPLETED, S.RETURN_REQUESTED, S.REFUNDED}),
    S.DELIVERED: frozenset({S.COMPLETED, S.RETURN_REQUESTED, S.REFUNDED}),
    S.COMPLETED: frozenset({S.RETURN_REQUESTED, S.REFUNDED}),
    S.RETURN_REQUESTED: frozenset({S.RETURNED, S.REFUNDED, S.COMPLETED}),
    S.REFUNDED: frozenset({S.RETURN_REQUESTED, S.RETURNED}),
    S.RETURNED: frozenset({S.REFUNDED}),
    S.CANCELLED: frozenset(),
    S.DUPLICATE: frozenset(),
}

TERMINAL: frozenset[S] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def can_transition(current: S, new: S) -> bool:
    """True when `new` may follow `current`; staying in place is not a transition."""
    return new in TRANSITIONS[current]


def sources_of(new: S) -> frozenset[S]:
    """Every status from which `new` may be reached (used to guard SQL updates)."""
    return frozenset(s for s, nxt in TRANSITIONS.items() if new in nxt)


def next_status(current: S, current_at: datetime, new: S, event_at: datetime) -> S | None:
    """The status after an event, or None when the event is stale or not an allowed move.

    An event older than the order's last status change never moves it, whatever it says.
    """
    if event_at < current_at or not can_transition(current, new):
        return None
    return new
