from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from runtime.services import Endpoints, TansuBroker, discover, reap_orphans, record
from runtime.settings import Settings
from schemas.errors import ConfigurationError


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_broker_left_behind_by_a_killed_hub_is_stopped_by_the_next_one(tmp_path: Path) -> None:
    broker = TansuBroker()
    broker.start()
    record(tmp_path, Endpoints(broker.bootstrap, "postgresql://x"),
           {"hub": _dead_pid(), "broker": broker.pid})
    assert reap_orphans(tmp_path) == [broker.pid]
    deadline = time.monotonic() + 10
    while broker._proc is not None and broker._proc.poll() is None:
        assert time.monotonic() < deadline, "orphaned broker still running"
        time.sleep(0.1)


def test_a_broker_whose_hub_is_alive_is_left_alone(tmp_path: Path) -> None:
    broker = TansuBroker()
    broker.start()
    try:
        record(tmp_path, Endpoints(broker.bootstrap, "postgresql://x"),
               {"hub": os.getpid(), "broker": broker.pid})
        assert reap_orphans(tmp_path) == []
        assert broker._proc is not None and broker._proc.poll() is None
    finally:
        broker.stop()


def test_discovery_prefers_configuration_then_a_live_hub_then_explains(tmp_path: Path) -> None:
    configured = Settings(data_dir=tmp_path, kafka={"bootstrap": "k:9092"},
                          database={"url": "postgresql://u@db/x"})
    assert discover(configured) == Endpoints("k:9092", "postgresql+psycopg://u@db/x")
    record(tmp_path, Endpoints("h:1", "postgresql+psycopg://h/db"), {"hub": _dead_pid()})
    with pytest.raises(ConfigurationError, match="ORDERHUB_KAFKA__BOOTSTRAP and "
                                                 "ORDERHUB_DATABASE__URL not set"):
        discover(Settings(data_dir=tmp_path))
