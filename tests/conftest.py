"""Shared fixtures: a real Tansu broker and a real Postgres, isolated per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runtime.db import make_engine, migrate
from runtime.kafka import create_topics
from runtime.services import EmbeddedPostgres, TansuBroker
from runtime.settings import Settings

REPO = Path(__file__).resolve().parent.parent
LOCAL_PG = ("127.0.0.1", 5432)


def _local_postgres_up() -> bool:
    try:
        socket.create_connection(LOCAL_PG, 0.5).close()
    except OSError:
        return False
    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker (memory storage) on a free loopback port for the whole session."""
    tansu = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "broker.log")
    tansu.start()
    yield tansu.bootstrap
    tansu.stop()


@pytest.fixture(scope="session")
def pg_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """libpq URI of a Postgres superuser: the machine's 127.0.0.1:5432, else an embedded one.

    ORDERHUB_TEST_EMBEDDED_PG=1 forces the embedded server (to test that path on a machine that
    has a local Postgres).
    """
    if os.environ.get("ORDERHUB_TEST_EMBEDDED_PG") != "1" and _local_postgres_up():
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    url = pg.start()
    yield url.replace("postgresql+psycopg://", "postgresql://").replace("/orderhub", "/postgres")
    pg.stop()


def _url_for(admin: str, db: str) -> str:
    base, _, query = admin.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + db + (f"?{query}" if query else "")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def template_db(pg_admin: str) -> Iterator[str]:
    """A database migrated once with Alembic; each test gets a copy of it."""
    name = f"orderhub_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    migrate(_url_for(pg_admin, name))
    yield name
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(pg_admin: str, template_db: str) -> Iterator[str]:
    name = f"orderhub_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield _url_for(pg_admin, name)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    """A loopback port nobody listens on right now (the receiver binds it moments later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(
    broker: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings on the test broker and database, with topic and group names unique to the test.

    They are also exported as ORDERHUB_* variables so CLI subprocesses see the same ones.
    """
    tag = uuid.uuid4().hex[:8]
    s = Settings(
        data_dir=tmp_path / ".orderhub",
        kafka={"bootstrap": broker, "topic_prefix": f"t{tag}.", "group_prefix": f"g{tag}"},
        database={"url": database_url},
        stage={"retry_attempts": 3, "retry_max_wait_s": 0.5},
        metrics={"port": 0},
        webhooks={"port": free_port()},
    )
    for key in [k for k in os.environ if k.startswith("ORDERHUB_")]:
        monkeypatch.delenv(key)
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    k = s.kafka
    create_topics(broker, k.topic_prefix, k.partitions, k.replication_factor)
    return s


@pytest.fixture
def engine(settings: Settings) -> Iterator[object]:
    assert settings.database.url is not None
    eng = make_engine(settings.database.url)
    yield eng
    eng.dispose()


def run_cli(*args: str, timeout: float = 300, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `orderhub ARGS` as a person would, in a fresh process with the current env."""
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], capture_output=True, text=True,
        timeout=timeout, cwd=cwd or REPO, env=env or dict(os.environ), stdin=subprocess.DEVNULL,
    )
