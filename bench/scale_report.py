"""The scaling benchmark's ratios (N workers ÷ one) and its tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHARED = ("broker", "postgres_db", "postgres_all", "harness", "machine", "stolen")


def ratios(runs: Mapping[str, Any], stage: str, workers: int) -> dict[str, dict[str, float | None]]:
    """For the stage and for the hop: N processes' rate ÷ one process's, steady and from start."""
    return {kind: {rate: _ratio(runs[f"{kind} x{workers}"], runs[f"{kind} x1"], rate)
                   for rate in ("steady_rate", "total_rate")}
            for kind in (stage, "hop")}


def _ratio(many: Mapping[str, Any], one: Mapping[str, Any], rate: str) -> float | None:
    a, b = many["timing"][rate], one["timing"][rate]
    return round(a / b, 3) if a and b else None


def tables(results: Mapping[str, Any]) -> str:
    runs = results["runs"]
    parts = [_rates(runs), _cores(runs), _ratio_lines(results)]
    if results["upstream"]:
        parts.append("upstream, filled once (msg/s steady): " + ", ".join(
            f"{name} {t['steady_rate'] or 0:,.0f}" for name, t in results["upstream"].items()))
    return "\n\n".join(parts)


def _rates(runs: Mapping[str, Any]) -> str:
    lines = ["| run | messages | steady msg/s | from start msg/s | start → first batch s "
             "| start → lag 0 s |", "|---|---:|---:|---:|---:|---:|"]
    for name, run in runs.items():
        t = run["timing"]
        steady = f"{t['steady_rate']:,.0f}" if t["steady_rate"] else "—"
        lines.append(f"| {name} | {t['messages']:,} | {steady} | {t['total_rate']:,.0f} "
                     f"| {t['first_batch_s']:.2f} | {t['lag0_s']:.2f} |")
    return "\n".join(lines)


def _cores(runs: Mapping[str, Any]) -> str:
    """Average cores over the steady part (first batch → last) of each run."""
    lines = [f"| run (cores, steady part) | each process | {' | '.join(SHARED)} |",
             "|---|---|" + "---:|" * len(SHARED)]
    for name, run in runs.items():
        cores = run["cores_steady"]
        own = " + ".join(f"{v:.2f}" for k, v in cores.items() if "#" in k)
        shared = " | ".join(f"{cores[k]:.2f}" if k in cores else "—" for k in SHARED)
        lines.append(f"| {name} | {own} | {shared} |")
    return "\n".join(lines)


def _ratio_lines(results: Mapping[str, Any]) -> str:
    n = results["workers"]
    return "\n".join(
        f"{kind} x{n} ÷ x1: steady {_fmt(r['steady_rate'])}, from start {_fmt(r['total_rate'])}"
        for kind, r in results["ratios"].items())


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
