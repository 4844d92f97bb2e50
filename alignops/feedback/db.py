"""The preference store's tables (SQLAlchemy 2.0 declarative) and their Alembic migrations.

Tables: annotators (argon2 hashes, role), prompts (shared across model versions by their text), responses (one
model version's completion of one eval sample, with the reward model's score of it when known), rankings and
ratings. Rankings and ratings are append-only: a
correction is a new row whose `supersedes` names the row it replaces; a `client_token` (unique) makes a
submission idempotent. Readers skip superseded rows (see store.py).

The schema is owned by Alembic (migrations/versions/); `upgrade(connection)` brings a database to head and is
what Store does on open. After changing a model here, write the next revision from the models and review it:

    python -c "from alignops.feedback import db; db.new_revision('add X to rankings')"

(against an empty SQLite file at head; the test suite checks that models and migrations agree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("labeler", "admin")
CRITERIA = ("helpful", "correct", "harmless")  # the Likert criteria of a rating, each 1..5
MIGRATIONS = Path(__file__).parent / "migrations"

# Named constraints: Alembic can only alter or drop what has a name, and SQLite's batch mode needs them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _first_per(table: str, column: str) -> Index:
    """Unique (annotator_id, column) among rows that correct nothing (a partial index: SQLite and Postgres)."""
    first = text("supersedes IS NULL")
    return Index(f"uq_{table}_first", "annotator_id", column, unique=True, sqlite_where=first, postgresql_where=first)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Annotator(Base):
    __tablename__ = "annotators"
    __table_args__ = (CheckConstraint("role IN ('labeler', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, never the password
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Prompt(Base):
    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Unique by hash, not by text: a btree index entry in Postgres is limited to ~2.7 kB and prompts may be longer.
    text_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("model_uri", "sample_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    model_uri: Mapped[str] = mapped_column(String(512))  # the model version that wrote it (models:/name/3)
    sample_id: Mapped[str] = mapped_column(String(256))  # its row in that version's evaluation samples.jsonl
    text: Mapped[str] = mapped_column(Text)
    # The reward model's score of this response at evaluation (samples.jsonl "reward"), or None when the
    # evaluation had no reward model: next_task(prefer_uncertain=True) ranks first where the scores are close.
    reward: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Ranking(Base):
    """One annotator's order of K responses to one prompt, or a skip."""

    __tablename__ = "rankings"
    # One first submission per annotator and prompt; with `supersedes` unique, every later one extends a single
    # chain of corrections, so there is exactly one current ranking per annotator and prompt, even under races.
    __table_args__ = (_first_per("rankings", "prompt_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    responses: Mapped[list[int]] = mapped_column(JSON)  # response ids in the order they were shown
    ranking: Mapped[list[list[int]]] = mapped_column(JSON)  # response ids best first, ties grouped; [] if skipped
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    client_token: Mapped[str] = mapped_column(String(200), unique=True)
    # unique: a row is corrected once; a later correction supersedes the correction (a chain, never a fork)
    supersedes: Mapped[int | None] = mapped_column(ForeignKey("rankings.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Rating(Base):
    """One annotator's 1-5 scores of one response on each criterion, with a comment."""

    __tablename__ = "ratings"
    __table_args__ = (
        *(CheckConstraint(f"{c} BETWEEN 1 AND 5", name=c) for c in CRITERIA),
        _first_per("ratings", "response_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id"), index=True)
    helpful: Mapped[int] = mapped_column(Integer)
    correct: Mapped[int] = mapped_column(Integer)
    harmless: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    client_token: Mapped[str] = mapped_column(String(200), unique=True)
    supersedes: Mapped[int | None] = mapped_column(ForeignKey("ratings.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic Config built in code (no alembic.ini): the scripts inside this package, so it works from an
    installed wheel; `connection`, when given, is the one env.py migrates."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Bring the database behind `connection` to the newest revision (a no-op when it is there)."""
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


def at_head(connection: Connection) -> bool:
    """Is the database behind `connection` at the newest revision? A read: no write lock is taken, so a Store
    opened beside a busy writer does not wait for it (the migration, a write, runs only when this says no)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = set(MigrationContext.configure(connection).get_current_heads())
    return current == set(ScriptDirectory.from_config(alembic_config()).get_heads())


def new_revision(message: str) -> None:
    """Write the next migration, autogenerated from the models, under migrations/versions/ (review it)."""
    import tempfile

    from alembic import command
    from sqlalchemy import create_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/revision.db")
        with engine.begin() as connection:
            upgrade(connection)
            number = len(list((MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))) + 1
            config = alembic_config(connection)
            command.revision(config, message=message, autogenerate=True, rev_id=f"{number:04d}")
        engine.dispose()
