"""Pure dedup decisions: is this normalized order new, a redelivery, or an update."""

from __future__ import annotations

from typing import Literal

Verdict = Literal["unique", "update"]


def classify(first_digest: str | None, digest: str) -> Verdict:
    """`unique` for the first version seen of an id (and its redeliveries), else `update`.

    A redelivery of the first version is classified the same way as the first delivery, so
    the stage re-emits the same output and downstream stays idempotent by key.
    """
    if first_digest is None or first_digest == digest:
        return "unique"
    return "update"
