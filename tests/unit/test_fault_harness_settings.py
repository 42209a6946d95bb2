from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import harness_settings
from runtime.settings import Settings


def test_the_fault_harness_settings_are_valid_where_its_workers_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # harness_settings builds them with model_copy, which validates nothing; each stage worker
    # reads them back from its environment, which validates everything, and a worker that
    # refuses them restarts until the run times out.
    built = harness_settings(tmp_path, "http://127.0.0.1:9/hook")
    for key, value in built.to_env().items():
        monkeypatch.setenv(key, value)

    read = Settings()

    n = read.notify
    assert (n.lease_s, n.webhook_url) == (10.0, "http://127.0.0.1:9/hook")
    assert n.batch / n.webhook_rate_per_s + n.timeout_s < n.lease_s
