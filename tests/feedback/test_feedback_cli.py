"""`alignops users add`, `alignops labels export` and `alignops labels stats` on the default SQLite store under a
fresh ALIGNOPS_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignops.cli import app
from alignops.feedback.store import Store

runner = CliRunner()


def test_users_and_labels_commands(home: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:
    monkeypatch.delenv("ALIGNOPS_DATABASE_URL", raising=False)
    monkeypatch.delenv("ALIGNOPS_USER_PASSWORD", raising=False)
    # a person types the password twice at a hidden prompt
    result = runner.invoke(app, ["users", "add", "alice", "--role", "admin"], input="a long passphrase\n" * 2)
    assert result.exit_code == 0, result.output
    assert "added admin alice (id 1)" in result.output and "a long passphrase" not in result.output
    # a script passes it in the environment; a weak one is refused with the reason, exit 2, no traceback
    monkeypatch.setenv("ALIGNOPS_USER_PASSWORD", "short")
    result = runner.invoke(app, ["users", "add", "bob"])
    assert result.exit_code == 2 and "use at least 10" in result.output and "Traceback" not in result.output
    monkeypatch.setenv("ALIGNOPS_USER_PASSWORD", "another long passphrase")
    assert runner.invoke(app, ["users", "add", "bob"]).exit_code == 0

    with Store() as store:
        assert store.url == f"sqlite:///{home.resolve() / 'feedback.db'}"
        bob = store.authenticate("bob", "another long passphrase")
        for model in ("models:/p/1", "models:/p/2"):
            store.import_samples(model, samples(model, 3))
        for n in range(2):
            task = store.next_task(bob.id, seed=n)
            r = [x.id for x in task.responses]
            store.submit_ranking(bob.id, task.prompt_id, [[r[0]], [r[1]]], f"t{n}", shown=r)

    out = home / "export" / "rankings.jsonl"
    result = runner.invoke(app, ["labels", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 2 and {r["annotator"] for r in records} == {"bob"}
    assert "exported 2 ranking(s) with id > 0" in result.output and "--after 2" in result.output
    result = runner.invoke(app, ["labels", "export", "--after", "1"])  # to stdout
    assert result.exit_code == 0 and [json.loads(line) for line in result.stdout.splitlines()] == records[1:]

    result = runner.invoke(app, ["labels", "stats"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "3 prompts, 6 responses, 2 rankings, 0 skipped, 0 ratings" in lines[0]
    assert any(line.split() == ["bob", "2", "0", "0"] for line in lines)
    assert any(line.split() == ["models:/p/1", "3", "2", "0"] for line in lines)
