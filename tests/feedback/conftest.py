"""Preference-store fixtures: a real SQLite file per test, and a fresh schema per test in the session's real
PostgreSQL (the database is shared by the session, so each test gets its own search_path)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from alignops.feedback import auth, db
from alignops.feedback.store import Store

PASSWORD = "a long passphrase"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feedback.db'}"


@pytest.fixture
def pg_url(postgres_url: str):
    """A Postgres URL whose default schema is new and empty; dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def store(store_url: str):
    """A fresh, migrated store: once on SQLite, once on Postgres."""
    with Store(store_url) as s:
        yield s


@pytest.fixture(scope="session")
def add_annotators():
    """add_annotators(store, names, role) -> {name: id}: many annotators at the cost of one argon2 hash (each
    add_annotator hashes, ~0.15 s on 2 cores), rows written through the models, all with PASSWORD. For tests
    that are not about identity."""
    from sqlalchemy.orm import Session

    digest = auth.hash_password(PASSWORD)

    def add(store: Store, names: list[str], role: str = "labeler") -> dict[str, int]:
        with Session(store._writer) as session, session.begin():
            rows = [db.Annotator(name=name, role=role, password_hash=digest) for name in names]
            session.add_all(rows)
            session.flush()
            return {row.name: row.id for row in rows}

    return add


@pytest.fixture(scope="session")
def samples():
    """samples(model, n) -> evaluation-style rows of one model version: one completion per prompt, the prompts
    shared by every version, the completions distinct."""

    def make(model: str, n: int) -> list[dict]:
        return [
            {"sample_id": f"s{i}", "prompt": f"prompt {i}: say something", "completion": f"{model} answers {i}"}
            for i in range(n)
        ]

    return make
