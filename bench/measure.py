"""What one timed phase produced: counts and the instants that the figures are built from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """A phase that processed `messages`, timed from its start (process start or consumer start).

    `first_s`: when the first batch was done, having processed `first_messages`;
    `done_s`: when every message was processed (its effects written);
    `lag0_s`: when the consumer group's committed offsets reached the end of its input.
    """

    messages: int
    first_s: float
    first_messages: int
    done_s: float
    lag0_s: float

    @property
    def total_rate(self) -> float:
        """Messages per second from start (startup included) until the group had no lag."""
        return self.messages / self.lag0_s

    @property
    def steady_rate(self) -> float | None:
        """Messages per second after the first batch until the last one was processed."""
        rest, span = self.messages - self.first_messages, self.done_s - self.first_s
        return rest / span if rest > 0 and span > 0 else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "messages": self.messages, "first_batch_s": self.first_s,
            "first_batch_messages": self.first_messages, "done_s": self.done_s,
            "lag0_s": self.lag0_s, "total_rate": self.total_rate,
            "steady_rate": self.steady_rate,
        }
