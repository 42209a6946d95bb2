"""Memory samples of the soak's processes (/proc/PID/status) and the table built from them."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from schemas.errors import OrderhubError

FIELDS = ("VmRSS", "VmHWM", "RssAnon")
MIN_GROWTH_SPAN = 20_000  # orders; over fewer, a few MiB of noise reads as a huge slope
MILESTONES = (0.0, 0.1, 0.25, 0.5, 1.0)  # of the measured orders: 0, 100k, 250k, 500k, 1M


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now), VmHWM (peak so far) and RssAnon of a live process, in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            found[key] = int(value.split()[0]) / 1024  # the kernel reports kB
    return found


def available_mb() -> float:
    """MemAvailable of the machine, in MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise OrderhubError("no MemAvailable in /proc/meminfo")


def notified(engine: Engine) -> int:
    """Send-log rows whose BuyerNotified is out: one per order with the default notify matrix."""
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM notifications WHERE emitted_at IS NOT NULL")).scalar_one())


@dataclass(frozen=True)
class Sample:
    """Every process's memory at one moment, with how far the run had got by then."""

    elapsed_s: float
    produced: int
    notified: int
    memory: dict[str, dict[str, float]]


class Sampler:
    """Takes and keeps samples; counts exclude the warm-up orders."""

    def __init__(
        self, pids: Mapping[str, int], engine: Engine, warmup: int, journal: Path
    ) -> None:
        """`pids`: process name (a stage, or "broker") -> pid to read; `journal`: a JSON line
        per sample is appended there as it is taken, so a killed run still leaves its samples."""
        self.pids, self.engine, self.warmup = dict(pids), engine, warmup
        self.journal = journal
        self.samples: list[Sample] = []
        self.started = time.monotonic()

    def take(self, produced: int) -> Sample:
        done = notified(self.engine) - self.warmup
        memory = {name: memory_mb(pid) for name, pid in self.pids.items()}
        sample = Sample(time.monotonic() - self.started, produced, done, memory)
        self.samples.append(sample)
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a") as out:
            out.write(json.dumps(asdict(sample)) + "\n")
        return sample


def milestones(samples: Sequence[Sample], orders: int) -> list[tuple[int, Sample | None]]:
    """For each milestone, the first sample with at least that many orders notified."""
    out: list[tuple[int, Sample | None]] = []
    for fraction in MILESTONES:
        target = round(fraction * orders)
        out.append((target, next((s for s in samples if s.notified >= target), None)))
    return out


def table(samples: Sequence[Sample], orders: int) -> str:
    """Markdown: VmRSS per process at each milestone, then its peak (VmHWM) over the run."""
    marks = milestones(samples, orders)
    names = list(samples[-1].memory)
    head = [f"{t:,} ({s.notified:,})" if s else f"{t:,} (—)" for t, s in marks]
    lines = ["| VmRSS MiB at orders notified (sampled at) | " + " | ".join(head)
             + " | peak VmHWM |",
             "|---|" + "---:|" * (len(marks) + 1)]
    for name in names:
        cells = [f"{s.memory[name]['VmRSS']:.0f}" if s else "—" for _t, s in marks]
        peak = max(s.memory[name]["VmHWM"] for s in samples)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {peak:.0f} |")
    return "\n".join(lines)


def as_dicts(samples: Sequence[Sample], orders: int) -> dict[str, Any]:
    """The samples and the milestone rows for the JSON results."""
    names = list(samples[-1].memory)
    # From the 10 % milestone: the first thousands of orders grow buffers once, not per order.
    first = milestones(samples, orders)[1][1] or samples[0]
    last = samples[-1]
    span = last.notified - first.notified
    growth = {n: (last.memory[n]["VmRSS"] - first.memory[n]["VmRSS"]) * 100_000 / span
              for n in names} if span >= MIN_GROWTH_SPAN else None
    return {
        "rss_growth_from": first.notified,
        "rss_growth_mb_per_100k_orders": growth,
        "milestones": [{"orders": t, "sample": asdict(s) if s else None}
                       for t, s in milestones(samples, orders)],
        "peak_vmhwm_mb": {n: max(s.memory[n]["VmHWM"] for s in samples) for n in names},
        "samples": [asdict(s) for s in samples],
    }
