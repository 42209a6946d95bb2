"""The figures table (ratio to the passthrough baseline) and the JSON results file."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One row of the table; `rate` rows get a ratio to the baseline, others a dash."""

    name: str
    value: float
    unit: str
    rate: bool = True


def table(figures: Sequence[Figure], baseline: float, second: float | None = None) -> str:
    """A Markdown table: figure, value, unit, ratio to the baseline (a) = 1.00, and to a
    second baseline (a') when given."""
    width = max(len(f.name) for f in figures)
    extra = " ratio to (a') |" if second else ""
    lines = [f"| {'figure':<{width}} | {'value':>9} | {'unit':<9} | ratio to (a) |{extra}",
             f"|{'-' * (width + 2)}|{'-' * 10}:|{'-' * 11}|{'-' * 13}:|"
             + (f"{'-' * 14}:|" if second else "")]
    for f in figures:
        ratio = f"{f.value / baseline:.2f}" if f.rate else "—"
        value = f"{f.value:,.0f}" if f.rate else f"{f.value:.2f}"
        line = f"| {f.name:<{width}} | {value:>9} | {f.unit:<9} | {ratio:>12} |"
        if second:
            line += f" {f'{f.value / second:.2f}' if f.rate else '—':>13} |"
        lines.append(line)
    return "\n".join(lines)


def write_results(directory: Path, stamp: str, results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return path


def figures(results: dict[str, Any], n: int) -> tuple[list[Figure], float]:
    """Table rows and the baseline rate (a)."""
    a = results["passthrough"]["timing"]
    baseline = a["steady_rate"] or a["total_rate"]  # no steady rate when one batch held all
    rows = [Figure("(a) aiokafka passthrough, steady", a["steady_rate"], "msg/s")]
    rows = rows if a["steady_rate"] else []
    rows.append(Figure("(a) aiokafka passthrough, incl. group join", a["total_rate"], "msg/s"))
    if "passthrough_default" in results:
        d = results["passthrough_default"]["timing"]
        rows.append(Figure("(a') the same, aiokafka's default producer, steady",
                           d["steady_rate"] or d["total_rate"], "msg/s"))
    for name, t in results["stages"].items():
        if t["steady_rate"] is not None:
            rows.append(Figure(f"(b) {name} alone, steady", t["steady_rate"], "msg/s"))
        rows.append(Figure(f"(b) {name} alone, from process start", t["total_rate"], "msg/s"))
        rows.append(Figure(f"(b) {name} start → first batch done", t["first_batch_s"], "s",
                           rate=False))
    c = results["end_to_end"]
    rows += [Figure(f"(c) end to end, {n} orders until notify lag 0", c["timing"]["total_rate"],
                    "orders/s"),
             Figure("(c) latency raw → notified, min", c["latency"]["min_s"], "s", rate=False),
             Figure("(c) latency raw → notified, p50", c["latency"]["p50_s"], "s", rate=False),
             Figure("(c) latency raw → notified, p99", c["latency"]["p99_s"], "s", rate=False)]
    if "p99_9_s" in c["latency"]:
        rows.append(Figure("(c) latency raw → notified, p99.9", c["latency"]["p99_9_s"], "s",
                           rate=False))
    return rows, baseline


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "ram_gib": round(mem / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release()}
