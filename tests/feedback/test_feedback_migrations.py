"""The preference store's schema belongs to Alembic: an empty database upgrades to head (and back down), a
database written at an older revision upgrades with its rows intact, and the SQLAlchemy models match the
migrations exactly (an autogenerate diff finds nothing), on SQLite and Postgres."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from alignops.feedback import db
from alignops.feedback.store import Store

TABLES = {"alembic_version", "annotators", "prompts", "responses", "rankings", "ratings"}


def test_empty_database_upgrades_to_head_and_models_match(store_url: str) -> None:
    engine = create_engine(store_url)
    head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
    with engine.begin() as connection:
        assert not set(inspect(connection).get_table_names()) & TABLES  # really empty
        db.upgrade(connection)
        assert MigrationContext.configure(connection).get_current_revision() == head
        assert set(inspect(connection).get_table_names()) == TABLES
        assert compare_metadata(MigrationContext.configure(connection), db.Base.metadata) == []

        command.downgrade(db.alembic_config(connection), "base")
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        db.upgrade(connection)
    engine.dispose()

    # Store upgrades on open, and opening an up-to-date database again changes nothing
    for _ in range(2):
        with Store(store_url) as store, store._engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == head


# A labeled 0001 database: an admin, a prompt with two models' answers, a ranking and its correction, a rating.
ROWS_0001 = {
    "annotators": ["INSERT INTO annotators (id, name, role, password_hash, created_at) "
                   "VALUES (1, 'ann', 'admin', '$argon2id$x', CURRENT_TIMESTAMP)"],
    "prompts": ["INSERT INTO prompts (id, text_sha256, text, created_at) "
                "VALUES (1, 'ab12', 'Say hi.', CURRENT_TIMESTAMP)"],
    "responses": [f"INSERT INTO responses (id, prompt_id, model_uri, sample_id, text, created_at) "
                  f"VALUES ({i}, 1, 'models:/m/{i}', 's0', 'hi {i}', CURRENT_TIMESTAMP)" for i in (1, 2)],
    "rankings": ["INSERT INTO rankings (id, annotator_id, prompt_id, responses, ranking, skipped, reason, "
                 "client_token, supersedes, created_at) "
                 f"VALUES ({i}, 1, 1, '[1, 2]', '{r}', false, '', 't{i}', {s}, CURRENT_TIMESTAMP)"
                 for i, r, s in ((1, "[[1], [2]]", "NULL"), (2, "[[2], [1]]", 1))],
    "ratings": ["INSERT INTO ratings (id, annotator_id, response_id, helpful, correct, harmless, comment, client_token,"
                " created_at) VALUES (1, 1, 2, 4, 5, 3, 'fine', 'r1', CURRENT_TIMESTAMP)"],
}  # fmt: skip


def _contents(connection) -> dict[str, list[tuple]]:
    columns = {  # every column of 0001 but the timestamps
        "annotators": "id, name, role, password_hash",
        "prompts": "id, text_sha256, text",
        "responses": "id, prompt_id, model_uri, sample_id, text",
        "rankings": "id, annotator_id, prompt_id, responses, ranking, skipped, reason, client_token, supersedes",
        "ratings": "id, annotator_id, response_id, helpful, correct, harmless, comment, client_token",
    }
    return {
        table: [tuple(row) for row in connection.execute(text(f"SELECT {names} FROM {table} ORDER BY id"))]
        for table, names in columns.items()
    }


def test_a_labeled_0001_database_upgrades_with_its_rows_intact(store_url: str) -> None:
    engine = create_engine(store_url)
    with engine.begin() as connection:
        command.upgrade(db.alembic_config(connection), "0001")
        for statements in ROWS_0001.values():
            for statement in statements:
                connection.execute(text(statement))
        before = _contents(connection)
        assert "reward" not in {c["name"] for c in inspect(connection).get_columns("responses")}

        db.upgrade(connection)  # what Store does on open
        assert MigrationContext.configure(connection).get_current_revision() == "0002"
        assert _contents(connection) == before
        assert connection.execute(text("SELECT reward FROM responses")).scalars().all() == [None, None]
        assert compare_metadata(MigrationContext.configure(connection), db.Base.metadata) == []

        command.downgrade(db.alembic_config(connection), "0001")  # and back: the column goes, the rows stay
        assert "reward" not in {c["name"] for c in inspect(connection).get_columns("responses")}
        assert _contents(connection) == before
        db.upgrade(connection)
    engine.dispose()

    # the upgraded store works: the corrected ranking is current, and importing the samples again scores them
    with Store(store_url) as store:
        records, _ = store.export_rankings()
        assert [(r["responses"], r["ranking"]) for r in records] == [(["hi 1", "hi 2"], [1, 0])]
        assert not store.has_rewards()
        for i in (1, 2):
            added = store.import_samples(f"models:/m/{i}", [{"sample_id": "s0", "prompt": "Say hi.",
                                                             "completion": f"hi {i}", "reward": i / 10}])  # fmt: skip
            assert added == 0
        assert store.has_rewards() and store.ratings()[0].scores == {"helpful": 4, "correct": 5, "harmless": 3}


def test_migrations_ship_inside_the_package() -> None:
    # script_location points into alignops/feedback/, so an installed wheel (no alembic.ini) can migrate
    assert (db.MIGRATIONS / "env.py").is_file()
    assert db.MIGRATIONS.parent.name == "feedback" and db.MIGRATIONS.parent.parent.name == "alignops"
    assert db.alembic_config().get_main_option("script_location") == str(db.MIGRATIONS)
    revisions = list(ScriptDirectory(str(db.MIGRATIONS)).walk_revisions())
    assert [r.revision for r in revisions] == ["0002", "0001"]  # a straight line, newest first
