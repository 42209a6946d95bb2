"""`python -m bench.poison --valid N --poison M`: valid orders alone, then mixed with poison."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from bench.harness import Bench, add_common_args, run_session
from bench.poison_payloads import Poison, poison
from bench.poison_run import Mixed, problems, reasons, run_mixed
from bench.services import fresh_database
from bench.workload import Orders, demo_orders
from runtime.db import make_engine, migrate
from runtime.services import Endpoints

log = logging.getLogger("bench.poison")
TARGET = 0.5


def run_phase(bench: Bench, stack: ExitStack, phase: str, orders: Orders,
              bad: Sequence[Poison], seed: int) -> tuple[Mixed, list[str], dict[str, Any]]:
    """One run on its own topics and database: the valid orders, with `bad` mixed in."""
    s = bench.settings(phase)
    url = stack.enter_context(fresh_database(bench.server, f"bench_{bench.run_id}_{phase}"))
    migrate(url)
    bench.topics(s)
    engine = make_engine(url)
    stack.callback(engine.dispose)
    log.info("%s: %d valid orders, %d poison", phase, len(orders) - 1, len(bad))
    run = run_mixed(s, Endpoints(bench.bootstrap, url), engine, orders, bad, bench.scratch,
                    bench.phase_timeout, seed)
    return run, problems(engine, run), reasons(engine, run)


def measure(bench: Bench, stack: ExitStack, args: argparse.Namespace) -> dict[str, Any]:
    """The clean run, then the mixed one, on one broker."""
    orders = demo_orders(args.valid + 1)  # the first one warms the stages up
    bad = list(poison(args.poison, args.seed))
    clean, clean_problems, _ = run_phase(bench, stack, "clean", orders, (), args.seed)
    mixed, mixed_problems, classes = run_phase(bench, stack, "mixed", orders, bad, args.seed)
    return {
        "stages": ["normalize", "dedup"], "valid": args.valid, "poison": args.poison,
        "seed": args.seed, "poison_bytes": sum(len(p.value or b"") for p in bad),
        "categories": dict(sorted(Counter(p.category for p in bad).items())),
        "error_classes": classes,
        "clean": _figures(clean), "mixed": _figures(mixed),
        "ratio": mixed.valid_rate / clean.valid_rate,
        "problems": {"clean": clean_problems, "mixed": mixed_problems},
    }


def _figures(run: Mixed) -> dict[str, Any]:
    return {"produce_s": run.produce_s, "valid_done_s": run.valid_done_s, "lag0_s": run.lag0_s,
            "valid_orders_per_s": run.valid_rate, "poison_dead_lettered": len(run.poison)}


def table(results: dict[str, Any]) -> str:
    c, m = results["clean"], results["mixed"]
    rows = [("valid orders accepted (normalize + dedup)", f"{results['valid']:,}", ""),
            ("poison messages", "—", f"{results['poison']:,}"),
            ("produce to orders.raw, s", f"{c['produce_s']:.1f}", f"{m['produce_s']:.1f}"),
            ("valid orders done, s", f"{c['valid_done_s']:.1f}", f"{m['valid_done_s']:.1f}"),
            ("all inputs committed, s", f"{c['lag0_s']:.1f}", f"{m['lag0_s']:.1f}"),
            ("valid orders/s", f"{c['valid_orders_per_s']:,.0f}",
             f"{m['valid_orders_per_s']:,.0f}"),
            ("mixed / clean", "", f"{results['ratio']:.2f} (target ≥ {TARGET})"),
            ("problems", str(len(results["problems"]["clean"])),
             str(len(results["problems"]["mixed"])))]
    lines = ["| figure | clean | mixed |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "| category | messages | dead letters by error class |", "|---|---:|---|"]
    lines += [f"| {k} | {v:,} | {_classes(results['error_classes'].get(k, {}))} |"
              for k, v in results["categories"].items()]
    return "\n".join(lines)


def _classes(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.poison", description=__doc__)
    p.add_argument("--valid", type=int, default=5000, help="valid orders (default 5000)")
    p.add_argument("--poison", type=int, default=10000, help="poison messages (default 10000)")
    p.add_argument("--seed", type=int, default=8, help="poison generator seed (default 8)")
    add_common_args(p, timeout=1200, phase_timeout=480)
    args = p.parse_args(argv)
    if args.valid < 1 or args.poison < 0:
        p.error("--valid must be at least 1 and --poison at least 0")
    return args


def verdict(results: dict[str, Any]) -> int:
    """1 if a run had problems or the mixed run fell under TARGET of the clean one's rate."""
    failed = results["problems"]["clean"] + results["problems"]["mixed"]
    for problem in failed:
        log.error("%s", problem)
    return 1 if failed or results["ratio"] < TARGET else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_session("poison", args, lambda bench, stack: measure(bench, stack, args), table,
                       verdict)


if __name__ == "__main__":
    sys.exit(main())
