from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas.base import SHANGHAI
from schemas.order import OrderStatus as S
from schemas.status import TERMINAL, TRANSITIONS, can_transition, next_status, sources_of

T0 = datetime(2026, 11, 11, 10, tzinfo=SHANGHAI)
statuses = st.sampled_from(list(S))


def test_every_canonical_status_has_a_rule() -> None:
    assert set(TRANSITIONS) == set(S)


def test_cancelled_and_duplicate_orders_never_change_again() -> None:
    assert TERMINAL == {S.CANCELLED, S.DUPLICATE}


def test_a_shipped_order_cannot_go_back_to_paid_or_allocated() -> None:
    assert not can_transition(S.SHIPPED, S.PAID)
    assert not can_transition(S.SHIPPED, S.ALLOCATED)


def test_an_allocated_order_can_still_be_cancelled_by_the_channel() -> None:
    assert next_status(S.ALLOCATED, T0, S.CANCELLED, T0 + timedelta(minutes=1)) == S.CANCELLED


def test_an_event_older_than_the_last_applied_one_never_moves_the_order() -> None:
    assert next_status(S.PAID, T0, S.CANCELLED, T0 - timedelta(seconds=1)) is None


@given(statuses, statuses)
def test_sources_of_is_the_inverse_of_the_transition_table(current: S, new: S) -> None:
    assert (current in sources_of(new)) == can_transition(current, new)


@given(st.lists(st.tuples(statuses, st.integers(-600, 600)), max_size=30))
def test_no_sequence_of_events_leaves_a_terminal_status(events: list[tuple[S, int]]) -> None:
    status, last = S.PAID, T0
    for new, shift in events:
        at = T0 + timedelta(seconds=shift)
        moved = next_status(status, last, new, at)
        if status in TERMINAL:
            assert moved is None
        if moved is not None:
            status, last = moved, at
