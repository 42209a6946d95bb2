"""`python -m bench.soak [--orders N] [--rate R]`: stage memory while N orders flow through."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.cpu import broker_pid
from bench.harness import RESULTS, Bench, run_session
from bench.offsets import group_lag, log_ends, stage_groups
from bench.services import fresh_database
from bench.soak_feed import Feeder, iter_orders, stock_for
from bench.soak_sample import Sample, Sampler, as_dicts, available_mb, notified, table
from bench.soak_topics import topic_profile
from bench.workers import PROFILE_ENV, Deadline, ensure_running, spawn, stop
from bench.workload import ingest_producer
from runtime.db import make_engine, migrate
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES
from schemas.errors import OrderhubError
from schemas.topics import DLQ, HELD, NOTIFIED, REVIEW

log = logging.getLogger("bench.soak")
WARMUP = 200
CHUNK = 250
POLL_S = 0.5
TARGET_MB = 300  # issue 9: RSS per stage <= 300 MB after 1,000,000 orders


@dataclass
class Soak:
    """A running hub: the feeder, the stage processes and the sampler, and the run's limits."""

    args: argparse.Namespace
    settings: Settings
    bootstrap: str
    engine: Engine
    procs: dict[str, subprocess.Popen[bytes]]
    feeder: Feeder
    sampler: Sampler
    log_dir: Path
    deadline: Deadline

    def warm_up(self) -> float:
        """Feed the warm-up orders unpaced and wait until all are notified: the 0 sample."""
        started = time.monotonic()
        while self.feeder.sent < WARMUP:
            self.feeder.produce(WARMUP - self.feeder.sent)
        while notified(self.engine) < WARMUP:
            self._check()
            time.sleep(POLL_S)
        self.feeder.start()  # the measured orders are counted and paced from here
        self.sample()
        return time.monotonic() - started

    def feed(self) -> float:
        """Produce the measured orders at --rate, sampling every --sample-every seconds."""
        orders, every = self.args.orders, self.args.sample_every
        next_sample = time.monotonic() + every
        while self.feeder.sent < orders:
            now = time.monotonic()
            if now >= next_sample:
                self.sample()
                next_sample += every
            elif now >= self.feeder.next_due():
                self.feeder.produce(orders - self.feeder.sent)
            else:
                time.sleep(min(self.feeder.next_due(), next_sample) - now)
        return time.monotonic() - self.feeder.started

    def drain(self) -> float:
        """Keep sampling until every order is notified and every group committed its input."""
        started = time.monotonic()
        while self.sample().notified < self.args.orders:
            time.sleep(min(self.args.sample_every, 2.0))
        groups = stage_groups(self.settings, STAGES)
        inputs = sorted({t for topics in groups.values() for t in topics})
        ends = log_ends(self.bootstrap, inputs, self.settings.kafka.partitions)
        while group_lag(self.bootstrap, groups, ends) != 0:
            self._check()
            time.sleep(POLL_S)
        self.sample()
        return time.monotonic() - started

    def sample(self) -> Sample:
        self._check()
        s = self.sampler.take(self.feeder.sent)
        log.info("%6.0fs produced %d notified %d backlog %d | %s", s.elapsed_s, s.produced,
                 s.notified, s.produced - s.notified,
                 " ".join(f"{n} {m['VmRSS']:.0f}" for n, m in s.memory.items()))
        return s

    def _check(self) -> None:
        self.deadline.check()
        ensure_running(self.procs, self.log_dir)
        if (free := available_mb()) < self.args.min_available_mb:
            # The broker keeps every message in memory; stop before the OOM killer picks a
            # process, which may be another engineer's benchmark on this machine.
            raise OrderhubError(f"only {free:.0f} MiB of memory left; soak stopped")


def outcome(soak: Soak, warmup: int) -> dict[str, Any]:
    """What the end state shows; `problems` lists what breaks "every order notified once, none
    off the happy path, no stage exited"."""
    with soak.engine.connect() as conn:
        rows, distinct = conn.execute(text(
            "SELECT count(*), count(DISTINCT order_id) FROM notifications "
            "WHERE emitted_at IS NOT NULL")).one()
        db_mb = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    prefix, parts = soak.settings.kafka.topic_prefix, soak.settings.kafka.partitions
    counts = {t.name: sum(log_ends(soak.bootstrap, [t.full_name(prefix)], parts).values())
              for t in (NOTIFIED, REVIEW, HELD, DLQ)}
    exited = {n: p.poll() for n, p in soak.procs.items() if p.poll() is not None}
    expected = soak.args.orders + warmup
    problems = [f"{distinct:,} of {expected:,} orders notified"] if distinct != expected else []
    if counts[NOTIFIED.name] < expected:
        problems.append(f"{counts[NOTIFIED.name]:,} BuyerNotified for {expected:,} orders")
    problems += [f"stage {n} exited with code {rc}" for n, rc in exited.items()]
    problems += [f"{counts[t.name]:,} on {t.name}" for t in (REVIEW, HELD, DLQ) if counts[t.name]]
    return {"orders_with_warmup": expected, "notifications_emitted": int(rows),
            "orders_notified": int(distinct), "messages": counts, "stages_exited": exited,
            "database_mb": int(db_mb) / 2**20, "problems": problems}


def measure(bench: Bench, stack: ExitStack, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, feed `args.orders` at `args.rate`, drain; sample memory all along."""
    broker = broker_pid(bench.bootstrap)
    if broker is None:
        raise OrderhubError(f"no Tansu process found listening on {bench.bootstrap}")
    s = bench.settings("soak")
    url = stack.enter_context(fresh_database(bench.server, f"bench_{bench.run_id}_soak"))
    migrate(url)
    bench.topics(s)
    stock_for(url, WARMUP + args.orders)
    engine = make_engine(url)
    stack.callback(engine.dispose)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name in STAGES:
        procs[name] = spawn(name, s, Endpoints(bench.bootstrap, url), bench.scratch)
        stack.callback(stop, procs[name])
    producer = stack.enter_context(ingest_producer(bench.bootstrap))
    feeder = Feeder(producer, s, iter_orders(WARMUP + args.orders), args.rate, CHUNK)
    pids = {**{n: p.pid for n, p in procs.items()}, "broker": broker}
    sampler = Sampler(pids, engine, WARMUP, RESULTS / f"soak-{bench.stamp}.samples.jsonl")
    soak = Soak(args, s, bench.bootstrap, engine, procs, feeder, sampler, bench.scratch,
                bench.deadline("soak"))
    log.info("soak: %d warm-up orders, then %d at %.0f/s", WARMUP, args.orders, args.rate)
    timings, failed = _phases(soak)
    samples = soak.sampler.samples
    results = {
        "orders": args.orders, "warmup_orders": WARMUP, "rate": args.rate,
        "feeder_max_late_s": feeder.max_late_s,
        "max_backlog": max(x.produced - x.notified for x in samples),
        "sample_every_s": args.sample_every, "timings": timings,
        "failed": failed, **as_dicts(samples, args.orders),
    }
    if failed is None:
        results["outcome"] = outcome(soak, WARMUP)
        results["broker_topics"] = topic_profile(bench.bootstrap, s)
    return results


def _phases(soak: Soak) -> tuple[dict[str, float], str | None]:
    """Warm up, feed, drain. A run stopped part-way still returns what it sampled: an hour of
    samples is worth keeping even when the end-state check cannot run."""
    timings: dict[str, float] = {}
    try:
        timings["warmup_s"] = soak.warm_up()
        timings["feed_s"] = soak.feed()
        timings["drain_s"] = soak.drain()
    except OrderhubError as e:  # timeout, SIGTERM, a stage that exited, memory running out
        if not soak.sampler.samples:
            raise
        log.error("soak stopped early; writing what was sampled: %s", e)
        return timings, str(e)
    return timings, None


def summary(results: dict[str, Any]) -> str:
    """The lines under the table: growth, pace, the end-state checks, what the broker holds."""
    if results["failed"]:
        return f"FAILED, stopped early: {results['failed']}"
    o = results["outcome"]
    slopes = results["rss_growth_mb_per_100k_orders"]
    growth = (", ".join(f"{n} {mb:+.1f}" for n, mb in slopes.items()) if slopes
              else "n/a (too few orders for a slope)")
    topics = ", ".join(f"{n} {t['messages']:,} x {t['mean_bytes'] or 0:,.0f} B"
                       for n, t in results["broker_topics"].items() if t["messages"])
    peaks = {n: mb for n, mb in results["peak_vmhwm_mb"].items() if n in STAGES}
    worst = max(peaks, key=peaks.__getitem__)
    verdict = "met" if peaks[worst] * 2**20 <= TARGET_MB * 10**6 else "NOT met"  # MiB vs MB
    return "\n".join([
        f"target RSS per stage <= {TARGET_MB} MB after {results['orders']:,} orders: {verdict} "
        f"(highest peak VmHWM: {worst} {peaks[worst]:.0f} MiB)",
        f"VmRSS growth, MiB per 100k orders (from {results['rss_growth_from']:,} orders to the "
        f"end): {growth}",
        f"fed {results['orders']:,} at {results['rate']:.0f}/s in "
        f"{results['timings']['feed_s']:.0f} s (at most {results['feeder_max_late_s']:.1f} s "
        f"behind schedule), max backlog {results['max_backlog']:,} orders",
        f"notified: {o['orders_notified']:,} of {o['orders_with_warmup']:,} orders (with "
        f"warm-up), {o['messages']['orders.notified']:,} BuyerNotified; stages exited: "
        f"{o['stages_exited'] or 'none'}; database {o['database_mb']:,.0f} MiB",
        f"end-state check: {'; '.join(o['problems']) or 'passed'}",
        f"broker holds: {topics}",
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--orders", type=int, default=1_000_000, help="default 1,000,000")
    p.add_argument("--rate", type=float, default=250.0,
                   help="orders/s produced to orders.raw (default 250)")
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--timeout", type=float, default=None,
                   help="whole run, seconds (default: twice orders/rate + 15 min)")
    p.add_argument("--min-available-mb", type=float, default=3072,
                   help="stop if the machine's MemAvailable falls below this (default 3072)")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the broker and stage logs (a temp dir) after a successful run")
    args = p.parse_args(argv)
    if args.orders < 1 or args.rate <= 0 or args.sample_every <= 0:
        p.error("--orders, --rate and --sample-every must be positive")
    if args.timeout is None:
        args.timeout = 2 * args.orders / args.rate + 900
    args.phase_timeout = args.timeout  # Bench.deadline: the soak is one long phase
    return args


def show(results: dict[str, Any]) -> str:
    return "\n".join([table([Sample(**x) for x in results["samples"]], results["orders"]),
                      summary(results)])


def verdict(results: dict[str, Any]) -> int:
    return 1 if results["failed"] or results["outcome"]["problems"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.pop(PROFILE_ENV, None):  # py-spy's pid and memory are not the stage's
        log.warning("%s ignored: the soak samples the stage processes themselves", PROFILE_ENV)
    return run_session("soak", args, lambda bench, stack: measure(bench, stack, args), show,
                       verdict)


if __name__ == "__main__":
    sys.exit(main())
