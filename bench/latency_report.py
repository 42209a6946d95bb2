"""The latency benchmark's figures per step (percentiles, drain, kept up) and its tables."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME

KEPT_UP_S = 0.5
"""A step kept up if the latency of its last fifth of orders (p50) is within this of its first
fifth's: a pipeline slower than the input builds a backlog, and the latency grows with it."""


def step_figures(
    received: Mapping[str, float], stamps: Mapping[str, tuple[float, int]]
) -> dict[str, Any]:
    """Latency = output message timestamp − received_at, over the step's orders that came out."""
    pairs = sorted((at, stamps[k][0] - at) for k, at in received.items() if k in stamps)
    out: dict[str, Any] = {"produced": len(received), "out": len(pairs)}
    if len(pairs) < 2:
        return out
    seconds = sorted(s for _at, s in pairs)
    cuts = statistics.quantiles(seconds, n=1000, method="inclusive")
    fifth = max(len(pairs) // 5, 1)
    first = statistics.median(s for _at, s in pairs[:fifth])
    last = statistics.median(s for _at, s in pairs[-fifth:])
    last_out = max(stamps[k][0] for k in received if k in stamps)
    first_out = min(stamps[k][0] for k in received if k in stamps)
    kinds = {stamps[k][1] for k in received if k in stamps}
    return {
        **out, "min_s": seconds[0], "p50_s": cuts[499], "p90_s": cuts[899], "p99_s": cuts[989],
        "p99_9_s": cuts[998], "max_s": seconds[-1],
        "first_fifth_p50_s": first, "last_fifth_p50_s": last,
        "drain_s": last_out - max(received.values()),
        "out_rate": len(pairs) / (last_out - first_out) if last_out > first_out else None,
        "kept_up": len(pairs) == len(received) and last - first <= KEPT_UP_S,
        "timestamp": "CreateTime" if kinds == {TIMESTAMP_CREATE_TIME} else f"types {kinds}",
    }


def segments(
    received: Mapping[str, float], hops: Sequence[tuple[str, Mapping[str, tuple[float, int]]]]
) -> dict[str, dict[str, float]]:
    """p50/p99 of each stage's share: its output's timestamp − the previous one's (raw: the
    received_at), per order seen on both, so where the latency goes can be read off."""
    out: dict[str, dict[str, float]] = {}
    name = "orders.raw"
    prev: Mapping[str, tuple[float, int]] = {k: (at, 0) for k, at in received.items()}
    for nxt, stamps in hops:
        spent = sorted(stamps[k][0] - prev[k][0] for k in received if k in stamps and k in prev)
        if len(spent) >= 2:
            cuts = statistics.quantiles(spent, n=100, method="inclusive")
            out[f"{name} → {nxt}"] = {"p50_s": cuts[49], "p99_s": cuts[98]}
        name, prev = nxt, stamps
    return out


def tables(steps: Sequence[Mapping[str, Any]]) -> str:
    return "\n\n".join([_latency_table(steps), _segments_table(steps), _cpu_table(steps)])


def _segments_table(steps: Sequence[Mapping[str, Any]]) -> str:
    names = list(steps[0]["pipeline"].get("segments", {})) if steps else []
    lines = [f"| step | {' | '.join(n.replace('orders.', '') for n in names)} |",
             "|---|" + "---:|" * len(names)]
    for step in steps:
        spent = step["pipeline"].get("segments", {})
        cells = [f"{spent[n]['p50_s'] * 1000:,.0f} / {spent[n]['p99_s'] * 1000:,.0f}"
                 if n in spent else "—" for n in names]
        lines.append(f"| {step['step']} (p50 / p99 ms) | {' | '.join(cells)} |")
    return "\n".join(lines)


def _latency_table(steps: Sequence[Mapping[str, Any]]) -> str:
    head = ("| step | path | produced/s | out/s | out | p50 ms | p90 ms | p99 ms | p99.9 ms "
            "| max ms | drain s | kept up |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for step in steps:
        for path in ("pipeline", "hop"):
            lines.append(_latency_row(step["step"], path, step[path]))
    return "\n".join(lines)


def _latency_row(label: str, path: str, f: Mapping[str, Any]) -> str:
    name = "raw → notified" if path == "pipeline" else "aiokafka hop"
    if "p50_s" not in f:
        return f"| {label} | {name} | {f['produce']['achieved_rate']:,.0f} | — | {f['out']} |" \
               + " — |" * 7 + " no |"
    ms = [f"{f[k] * 1000:,.0f}" for k in ("p50_s", "p90_s", "p99_s", "p99_9_s", "max_s")]
    kept = "yes" if f["kept_up"] else ("no" if f["drained"] else "no (not drained)")
    return (f"| {label} | {name} | {f['produce']['achieved_rate']:,.0f} | {f['out_rate']:,.0f} "
            f"| {f['out']}/{f['produced']} | {' | '.join(ms)} | {f['drain_s']:.2f} | {kept} |")


def _cpu_table(steps: Sequence[Mapping[str, Any]]) -> str:
    roles = ("workers", "hop", "broker", "postgres_db", "postgres_all", "harness", "machine",
             "stolen")
    lines = [f"| step | path | cores: {' | '.join(roles)} |",
             "|---|---|" + "---:|" * len(roles)]
    for step in steps:
        for path in ("pipeline", "hop"):
            cores = step[path]["cores"]
            values = " | ".join(f"{cores.get(r, 0.0):.2f}" for r in roles)
            lines.append(f"| {step['step']} | {path} | {values} |")
    return "\n".join(lines)
