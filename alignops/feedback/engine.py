"""The preference store's engine: which database (SQLite under ALIGNOPS_HOME, or Postgres by URL), its
connections, migrations, and one-transaction reads and writes with retries. `StoreEngine` is the base every part
of the store (queue, labels, reports) builds on; `Store` (store.py) is all of them together.

Each write is one transaction, retried when the database says it is busy: on SQLite writers take the lock up
front (BEGIN IMMEDIATE, WAL mode, a busy timeout) so they queue instead of failing; on Postgres unique
constraints settle races and serialization failures or deadlocks are retried.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from alignops import settings
from alignops.errors import StoreError, store_error
from alignops.feedback import db
from alignops.feedback.rows import checked_id

T = TypeVar("T")


BUSY_TIMEOUT_S = 30  # how long a SQLite writer waits for the lock before "database is locked"


ATTEMPTS = 6  # tries of one write transaction while the database reports it busy or a race


_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # Postgres: serialization failure, deadlock detected


def database_url() -> str:
    """ALIGNOPS_DATABASE_URL when set (e.g. postgresql+psycopg://user@host/db), else SQLite under ALIGNOPS_HOME."""
    return os.environ.get("ALIGNOPS_DATABASE_URL") or f"sqlite:///{settings.home() / 'feedback.db'}"


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise StoreError(
            f"{url}: an in-memory SQLite database is private to one connection, so labelers would not share it; "
            "use a file (sqlite:////path/feedback.db) or leave ALIGNOPS_DATABASE_URL unset for the default"
        )
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}, pool_size=10, max_overflow=20
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" below start transactions, not the sqlite3 module (which defers BEGIN until
        # the first write and so turns a read-then-write into a lock upgrade that fails without waiting).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
        cursor.execute("PRAGMA foreign_keys=ON")
        # synchronous stays FULL (the default): a label acknowledged to a labeler survives a power cut too
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        # Writers take the write lock first, so they wait their turn (busy_timeout) instead of failing midway.
        write = connection.get_execution_options().get("write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def open_engine(url: str) -> Engine:
    """The SQLAlchemy engine of a store URL (SQLite or Postgres); StoreError for anything else."""
    try:
        parsed = make_url(url)
    except Exception:  # the text is not echoed: it may hold a password
        raise StoreError(
            "the database URL is not a URL; e.g. sqlite:////abs/path.db or postgresql+psycopg://..."
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg2 to SQLAlchemy; psycopg 3 is ours
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
        except ImportError as exc:
            raise StoreError(
                f"{exc}: the Postgres driver is missing; pip install 'alignops[server]' (psycopg 3)"
            ) from None
    raise StoreError(
        f"the database URL {parsed.render_as_string(hide_password=True)} is neither SQLite nor Postgres; "
        "use sqlite:///<file> or postgresql+psycopg://user@host/db (ALIGNOPS_DATABASE_URL)"
    )


def _transient(exc: DBAPIError) -> bool:
    """A failure that the same transaction, tried again, can get past."""
    if getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message


class StoreEngine:
    """The preference database's connection and transactions. Thread-safe: one store may serve many threads."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or database_url()
        self._engine = open_engine(self.url)
        self._writer = self._engine.execution_options(write=True)
        # A read (counts, export) is one snapshot: SQLite's read transactions are; Postgres's default READ
        # COMMITTED gives each statement its own, REPEATABLE READ one for the transaction (reads never conflict).
        self._reader = (
            self._engine.execution_options(isolation_level="REPEATABLE READ")
            if self._engine.dialect.name == "postgresql"
            else self._engine
        )
        self._migrate()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    @property
    def location(self) -> str:
        """The database URL with any password masked, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._engine.dialect.name

    def _migrate(self) -> None:
        from alembic.util import CommandError

        def upgrade(session: Session) -> None:
            connection = session.connection()
            if self.dialect == "postgresql":
                # Two processes opening a new database at once: one migrates, the other waits and finds it done.
                connection.execute(text("SELECT pg_advisory_xact_lock(7270117)"))
            db.upgrade(connection)

        try:
            with self._reader.connect() as connection:
                if db.at_head(connection):  # migrate once: a read, so opening never queues behind a writer
                    return
            self._write(upgrade)
        except CommandError as exc:  # e.g. the database is at a revision this code does not know
            self.close()
            raise StoreError(
                f"cannot migrate the preference store at {self.location}: {exc}. A database written by a newer "
                "alignops needs that version (pip install -U alignops); otherwise point ALIGNOPS_DATABASE_URL at "
                "the right database"
            ) from None
        except DBAPIError as exc:
            self.close()
            raise store_error(exc, f"the preference store at {self.location}") from None

    def _write(self, work: Callable[[Session], T], retry_conflicts: bool = False) -> T:
        """Run `work` in one write transaction, committed if it returns; tried again while the database is busy
        (and, with retry_conflicts, after a unique-constraint race that a fresh read resolves)."""
        for attempt in range(ATTEMPTS):
            try:
                with Session(self._writer, expire_on_commit=False) as session, session.begin():
                    return work(session)
            except IntegrityError:
                if not retry_conflicts or attempt == ATTEMPTS - 1:
                    raise
            except DBAPIError as exc:
                if not _transient(exc) or attempt == ATTEMPTS - 1:
                    raise
            time.sleep(random.uniform(0.01, 0.05) * 2**attempt)  # jitter: retried writers do not collide again
        raise AssertionError("unreachable")

    def _read(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one read transaction (one consistent snapshot)."""
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            return work(session)

    @staticmethod
    def _annotator(session: Session, annotator_id: Any) -> db.Annotator:
        row = session.get(db.Annotator, checked_id(annotator_id, "annotator_id"))
        if row is None:
            raise StoreError(f"there is no annotator with id {annotator_id}; sign in again (or add the user)")
        return row

    @staticmethod
    def _superseded(table):
        """Ids that a later row of `table` replaces."""
        return select(table.supersedes).where(table.supersedes.is_not(None))
