"""Postgres engine, Alembic migrations and the transient-error boundary for SQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from schemas.errors import ConfigurationError, TransientError

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent.parent / "deploy" / "migrations"


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine on psycopg 3; opened lazily, so building it does no I/O."""
    try:
        parsed = make_url(url)
    except Exception as e:  # sqlalchemy raises ArgumentError subclasses and ValueError alike
        raise ConfigurationError(
            f"ORDERHUB_DATABASE__URL is not a database URL ({e}); expected "
            "postgresql+psycopg://user@host:5432/db"
        ) from e
    # Sessions in Asia/Shanghai so every timestamptz read back is already +08:00.
    return create_engine(parsed, pool_size=pool_size, pool_pre_ping=True,
                         connect_args={"options": "-c timezone=Asia/Shanghai"})


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at deploy/migrations, independent of the working dir."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database schema to the latest revision (idempotent)."""
    try:
        command.upgrade(alembic_config(url), "head")
    except OperationalError as e:
        raise TransientError(f"cannot reach Postgres to migrate: {e.orig}") from e


def is_transient(error: BaseException) -> bool:
    """Errors worth retrying: the connection or server failed, not the statement."""
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in one transaction; infrastructure failures become TransientError."""
    try:
        with engine.begin() as conn:
            return work(conn)
    except DBAPIError as e:
        if is_transient(e):
            raise TransientError(f"Postgres unavailable: {e.orig}") from e
        raise
