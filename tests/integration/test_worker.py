from __future__ import annotations

import os
import subprocess
import sys

from runtime.settings import Settings
from runtime.worker import EXIT_HALTED
from schemas.topics import NORMALIZED
from tests.integration.test_runner import _normalized_record
from tests.stagekit import KafkaIO


def test_a_worker_whose_database_stays_down_stops_loudly_with_exit_75(settings: Settings) -> None:
    io = KafkaIO(settings)
    record = _normalized_record(settings)
    io.produce(NORMALIZED, [("SHOP1", record.value or b"")])
    env = {**os.environ, "ORDERHUB_DATABASE__URL": "postgresql://postgres@127.0.0.1:1/none",
           "ORDERHUB_STAGE__RETRY_ATTEMPTS": "2"}
    worker = subprocess.run([sys.executable, "-m", "runtime.cli", "stage", "dedup"], env=env,
                            capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert worker.returncode == EXIT_HALTED
    assert "giving up after 2 attempts" in worker.stderr
    assert "resumes from its last commit" in worker.stderr
