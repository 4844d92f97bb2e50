"""User errors end the same way from every command: one paragraph (what, where, how to fix), exit 2, no traceback.
Real bad inputs against a real, empty MLflow store and preference store (the paths and URIs part of the bad-input
corpus); and the error table recognises library errors by their class, never by a name written as a string."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignops import errors
from alignops.cli import app

# (command line, words the message must contain)
BAD_INPUTS = [
    (["labels", "export", "--out", "{tmp}"], ["cannot use {tmp}", "is a directory", "name a file"]),
    (["labels", "export", "--out", "{file}/x.jsonl"], ["cannot use {file}", "choose another path"]),
    (["generate", "--model", "{tmp}/no-such-model", "--prompt", "hi"], ["no such model folder", "models:/<name>"]),
    (["generate", "--model", "models:/nope", "--prompt", "hi"], ["'models:/nope' names no registered version"]),
    (["serve", "--model", "models:/a/b/3"], ["names no registered version", "models:/<name>@<alias>"]),
    (["serve", "--model", "models:/nope@champion"], ["no version of 'nope' has the alias 'champion'"]),
]


@pytest.mark.parametrize(("args", "words"), BAD_INPUTS)
def test_a_bad_path_or_uri_is_one_paragraph_exit_2(
    args: list[str], words: list[str], home: Path, tmp_path: Path
) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a folder", encoding="utf-8")
    fill = {"{tmp}": str(tmp_path), "{file}": str(file)}
    args = [_filled(a, fill) for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: "), result.output
    for word in words:
        assert _filled(word, fill).lower() in message.lower(), message


@pytest.mark.parametrize(
    "args",
    [["labels", "stats"], ["serve", "--model", "models:/x/1"], ["dashboard", "--port", "1"],
     ["generate", "--model", "models:/x/1", "--prompt", "hi"], ["model", "import", "/no/such/folder"]],
)  # fmt: skip
def test_a_home_that_is_a_file_is_named(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.write_text("", encoding="utf-8")
    monkeypatch.setenv("ALIGNOPS_HOME", str(home))
    monkeypatch.delenv("ALIGNOPS_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"ALIGNOPS_HOME={home} cannot hold" in result.output and "folder you can write to" in result.output


def test_library_errors_are_recognised_by_class() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST
    from sqlalchemy.exc import OperationalError

    missing = MlflowException("Registered Model with name=x not found", error_code=RESOURCE_DOES_NOT_EXIST)
    assert isinstance(errors.user_error(missing), errors.ModelError)
    internal = MlflowException("boom", error_code=INTERNAL_ERROR)
    assert errors.user_error(internal) is None  # a server fault is not the user's to fix: it raises
    locked = OperationalError("INSERT ...", {}, Exception("database is locked"))
    assert isinstance(errors.user_error(locked), errors.StoreError)

    class MlflowLookalike(Exception):  # a class that only claims to come from MLflow is not MLflow's
        error_code = "RESOURCE_DOES_NOT_EXIST"

    MlflowLookalike.__module__ = "mlflow.exceptions"
    assert errors.user_error(MlflowLookalike("x")) is None
    assert errors.user_error(KeyError("a bug")) is None


def _filled(text: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        text = text.replace(key, value)
    return text
