from __future__ import annotations

import asyncio
from typing import Any

from ingest.receiver import _one_at_a_time


def test_copies_of_one_delivery_take_turns_and_other_deliveries_do_not_wait() -> None:
    """A channel retrying while the first copy is still being produced: the copies run one
    after the other (so the later ones find the id recorded); another id runs alongside."""
    steps: list[tuple[str, str]] = []

    async def produce(name: str) -> Any:
        steps.append(("start", name))
        await asyncio.sleep(0.02)
        steps.append(("end", name))
        return name

    async def main() -> dict[Any, Any]:
        in_flight: dict[Any, Any] = {}
        await asyncio.gather(
            _one_at_a_time(in_flight, ("douyin", "d1"), lambda: produce("d1-a")),
            _one_at_a_time(in_flight, ("douyin", "d1"), lambda: produce("d1-b")),
            _one_at_a_time(in_flight, ("douyin", "d2"), lambda: produce("d2")),
        )
        return in_flight

    left = asyncio.run(main())

    d1 = [s for s in steps if s[1].startswith("d1")]
    assert d1 == [("start", "d1-a"), ("end", "d1-a"), ("start", "d1-b"), ("end", "d1-b")]
    assert steps.index(("start", "d2")) < steps.index(("end", "d1-a"))
    assert left == {}
