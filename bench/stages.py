"""Figures (b): one real stage worker alone on a pre-filled input, until its group has no lag."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sqlalchemy import Engine

from bench.measure import Timing
from bench.offsets import Ends, group_lag, log_ends, stage_groups
from bench.workers import Deadline, ensure_running, spawn, stop, tracked
from runtime.services import Endpoints
from runtime.settings import Settings
from runtime.stages import STAGES, group_id
from schemas.errors import OrderhubError

POLL_S = 0.05


def time_stage(
    name: str, settings: Settings, endpoints: Endpoints, engine: Engine, log_dir: Path,
    deadline: Deadline,
) -> Timing:
    """Start the stage's process on inputs already waiting and time it until it caught up."""
    prefix = settings.kafka.topic_prefix
    sources = [s.full_name(prefix) for s in STAGES[name].sources]
    ends = log_ends(endpoints.bootstrap, sources, settings.kafka.partitions)
    expected = sum(ends.values())
    if expected == 0:
        raise OrderhubError(f"{name}: nothing to consume on {', '.join(sources)}")
    started = time.perf_counter()
    proc = spawn(name, settings, endpoints, log_dir)
    try:
        return _watch(name, proc, settings, endpoints, engine, ends, started, log_dir, deadline)
    finally:
        stop(proc)


def _watch(
    name: str, proc: subprocess.Popen[bytes], settings: Settings, endpoints: Endpoints,
    engine: Engine, ends: Ends, started: float, log_dir: Path, deadline: Deadline,
) -> Timing:
    group, expected = group_id(settings, name), sum(ends.values())
    groups = stage_groups(settings, [name])
    first: tuple[float, int] | None = None
    done_s: float | None = None
    while True:
        deadline.check()
        ensure_running({name: proc}, log_dir)
        if done_s is None:
            progress = tracked(engine, group)
            now = time.perf_counter() - started
            if progress and first is None:
                first = (now, progress)
            if progress >= expected:
                done_s = now
        elif group_lag(endpoints.bootstrap, groups, ends) == 0:
            assert first is not None
            return Timing(expected, first[0], first[1], done_s,
                          time.perf_counter() - started)
        time.sleep(POLL_S)
