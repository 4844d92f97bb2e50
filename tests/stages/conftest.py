"""Stage tests share a built, validated dataset and a tokenizer made from the fixture sources: built once per test
module, not once per test, while each test keeps a fresh ALIGNOPS_HOME and so its own MLflow store and registry."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alignops import settings
from alignops.config import PipelineConfig, load_config
from alignops.stages import data, tokenizer
from tests.conftest import project_checkout


@dataclass(frozen=True)
class BuiltProject:
    repo: Path  # the git + DVC checkout whose data/ is built, validated and recorded in data.dvc
    overrides: list[str]  # the tiny overrides, with the fixture source cache
    tokenizer_dir: Path  # the trained tokenizer, copied into each test's home


@pytest.fixture(scope="module")
def built_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltProject]:
    with project_checkout(tmp_path_factory.mktemp("built")) as overrides:
        cfg = load_config("tiny", overrides)
        data.build(cfg)
        data.validate(cfg)
        tokenizer.run(cfg)
        yield BuiltProject(Path.cwd(), overrides, settings.home() / "tokenizer")


@pytest.fixture
def built(built_project: BuiltProject, home: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    """A config whose data is built and validated and whose tokenizer is trained; the working directory is the
    module's checkout, ALIGNOPS_HOME this test's own (with the tokenizer in it), so no model or run of an earlier
    test is seen. A test that changes data/ changes it for the tests after it in the module."""
    monkeypatch.chdir(built_project.repo)
    shutil.copytree(built_project.tokenizer_dir, home / "tokenizer")
    return load_config("tiny", built_project.overrides)
