"""The preference store on real SQLite files: opening it does not queue behind a writer (it took the write lock
to migrate on every open, so a reader waited 40 s); a locked file and a corrupt file each get their own hint
(a locked file was blamed on "the database server"; a corrupt page gave a raw sqlalchemy traceback)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from alignops.cli import app
from alignops.errors import StoreError, store_error, user_error
from alignops.feedback.store import Store


@pytest.fixture
def db_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "feedback.db"
    monkeypatch.setenv("ALIGNOPS_DATABASE_URL", f"sqlite:///{path}")
    Store().close()  # created and migrated once
    return path


def test_a_reader_opens_and_reads_while_a_writer_holds_the_lock(db_file: Path) -> None:
    writer = sqlite3.connect(db_file, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the write lock, held as a long labeling transaction would
    writer.execute("INSERT INTO annotators (name, password_hash, role, created_at) VALUES ('w', 'x', 'labeler', '')")
    done: dict[str, float] = {}

    def read() -> None:
        started = time.monotonic()
        with Store() as store:
            done["totals"] = store.counts()["totals"]["rankings"]
        done["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=20)
    writer.execute("ROLLBACK")
    writer.close()
    assert done.get("seconds", 99) < 5, done  # not the 30 s busy timeout
    assert done["totals"] == 0


def test_a_locked_file_is_not_blamed_on_a_server(db_file: Path) -> None:
    writer = sqlite3.connect(db_file, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    impatient = create_engine(f"sqlite:///{db_file}", connect_args={"timeout": 0})
    try:
        with pytest.raises(Exception) as caught, impatient.begin() as connection:
            connection.execute(
                text("INSERT INTO annotators (name, password_hash, role, created_at) VALUES ('a', 'x', 'labeler', '')")
            )
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    error = user_error(caught.value)  # what the CLI prints for it
    assert isinstance(error, StoreError)
    assert "database is locked" in str(error) and "holds the SQLite file's write lock" in str(error)
    assert "server" not in str(error)


def test_a_corrupt_file_speaks_with_the_recovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "feedback.db"
    path.write_bytes(b"this is not a database, it is text " * 200)
    monkeypatch.setenv("ALIGNOPS_DATABASE_URL", f"sqlite:///{path}")
    with pytest.raises(StoreError, match=r"file is not a database.*\.recover"):
        Store()
    result = CliRunner().invoke(app, ["labels", "stats"])
    assert result.exit_code == 2 and "Traceback" not in result.output and ".recover" in result.output


def test_a_server_error_asks_about_the_server() -> None:
    error = store_error(ConnectionRefusedError("connection refused"), "the preference store at postgresql://db")
    assert "database server running" in str(error)
