"""The figures table (ratio to the passthrough baseline) and the JSON results file."""

from __future__ import annotations

import json
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


def table(figures: Sequence[Figure], baseline: float) -> str:
    """A Markdown table: figure, value, unit, ratio to the baseline (a) = 1.00."""
    width = max(len(f.name) for f in figures)
    lines = [f"| {'figure':<{width}} | {'value':>9} | {'unit':<9} | ratio to (a) |",
             f"|{'-' * (width + 2)}|{'-' * 10}:|{'-' * 11}|{'-' * 13}:|"]
    for f in figures:
        ratio = f"{f.value / baseline:.2f}" if f.rate else "—"
        value = f"{f.value:,.0f}" if f.rate else f"{f.value:.2f}"
        lines.append(f"| {f.name:<{width}} | {value:>9} | {f.unit:<9} | {ratio:>12} |")
    return "\n".join(lines)


def write_results(directory: Path, stamp: str, results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return path
