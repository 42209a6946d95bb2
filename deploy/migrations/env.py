"""Alembic environment: migrations run against the URL orderhub passes in, online only."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from schemas.tables import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "orderhub passes sqlalchemy.url in the Alembic config"
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
