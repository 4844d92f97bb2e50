"""Alembic's environment for the preference store: migrates the connection handed over in the Config (what
db.upgrade does), else the database at store.database_url(). Offline (SQL script) mode is not supported."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from alignops.feedback.db import Base


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        raise SystemExit("The preference store's migrations run online only (against a database connection).")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    from alignops.feedback.store import database_url

    engine = create_engine(database_url())
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


run()
