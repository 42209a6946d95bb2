from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import Engine

from bench.poison_payloads import CATEGORIES, poison
from bench.poison_run import problems, run_mixed
from runtime.services import Endpoints
from runtime.settings import Settings
from tests.builders import demo_orders


def test_six_hundred_poison_messages_are_dead_lettered_with_reasons_and_valid_orders_flow(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    bad = list(poison(600, seed=8))
    assert set(Counter(p.category for p in bad)) == set(CATEGORIES)
    assert settings.kafka.bootstrap and settings.database.url
    endpoints = Endpoints(settings.kafka.bootstrap, settings.database.url)

    run = run_mixed(settings, endpoints, engine, demo_orders(301, seed=5), bad, tmp_path,
                    timeout_s=90)

    assert len(run.poison) == 600
    assert len(run.valid) == 300
    assert problems(engine, run) == []
