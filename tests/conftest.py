"""Test-session isolation: every test session gets its own ALIGNOPS_HOME, MLflow store and Prefect home,
and nothing phones home. Fixtures that need a real tracking store use the `home` fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alignops import settings


@pytest.fixture(autouse=True, scope="session")
def _isolated_session(tmp_path_factory: pytest.TempPathFactory) -> None:
    session_home = tmp_path_factory.mktemp("alignops-home")
    os.environ["ALIGNOPS_HOME"] = str(session_home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["PREFECT_HOME"] = str(session_home / "prefect")
    settings.apply_offline_env()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ALIGNOPS_HOME (and so a fresh SQLite MLflow store) for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("ALIGNOPS_HOME", str(path))
    return path
