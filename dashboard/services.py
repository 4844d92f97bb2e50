"""The dashboard's data access, cached: MLflow only through alignops.tracking, the labels only through the
preference store (alignops.feedback.store), data versions from git history of data.dvc.

Cached reads are keyed by the tracking URI (or the database URL), so two projects (or two tests) in one
process never see each other's runs. What changes while someone watches (runs, registry, labels) is cached
for seconds; what never changes once written (a run's config, an artifact) is cached for good.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
import yaml

from alignops import tracking
from dashboard import logic

FRESH_S = 15  # how long a list of runs or models may be stale


def _uri() -> str:
    return tracking.tracking_uri()


# --------------------------------------------------------------------------------------------------------
# The preference store


@st.cache_resource(show_spinner=False)
def _store(url: str):
    from alignops.feedback.store import Store

    return Store(url)


def store():
    """The preference store of this project (ALIGNOPS_DATABASE_URL, else SQLite under ALIGNOPS_HOME), opened
    once per process and shared by every session (its engine pools connections)."""
    from alignops.feedback.store import database_url

    return _store(database_url())


def admin_credentials() -> tuple[str, str] | None:
    """(name, password) of the admin to create on first start: ALIGNOPS_ADMIN_USER (default admin) and
    ALIGNOPS_ADMIN_PASSWORD from the environment, else from .streamlit/secrets.toml (never committed)."""
    password = os.environ.get("ALIGNOPS_ADMIN_PASSWORD")
    name = os.environ.get("ALIGNOPS_ADMIN_USER", "admin")
    if password is None:
        try:
            password = st.secrets.get("ALIGNOPS_ADMIN_PASSWORD")
            name = st.secrets.get("ALIGNOPS_ADMIN_USER", name)
        except FileNotFoundError:  # no secrets file: nothing to bootstrap
            return None
    return (name, password) if password else None


def overlap() -> int:
    """How many labelers Rank offers each prompt to before new prompts: ALIGNOPS_LABEL_OVERLAP, else the
    default of feedback.overlap in the config."""
    from alignops.config import FeedbackConfig

    raw = os.environ.get("ALIGNOPS_LABEL_OVERLAP")
    return FeedbackConfig().overlap if raw is None else FeedbackConfig(overlap=raw).overlap


@st.cache_resource(show_spinner=False)
def _random_secret() -> bytes:
    return secrets.token_bytes(32)


def session_secret() -> bytes:
    """The key that signs session tokens: ALIGNOPS_SESSION_SECRET from the environment, else from
    .streamlit/secrets.toml; without either, a random key drawn once per process (sessions then end with it)."""
    value = os.environ.get("ALIGNOPS_SESSION_SECRET")
    if not value:
        try:
            value = st.secrets.get("ALIGNOPS_SESSION_SECRET")
        except FileNotFoundError:  # no secrets file
            value = None
    return value.encode("utf-8") if value else _random_secret()


@st.cache_resource(show_spinner=False)
def throttle():
    """The process's sign-in throttle, shared by every session."""
    from dashboard.throttle import Throttle

    return Throttle()


@st.cache_resource(show_spinner=False)
def _bootstrap(url: str, name: str) -> str | None:
    """Create the configured admin unless an account of that name exists (its password is left alone); once per
    process and store. Returns why it could not, or None."""
    from alignops.feedback.store import StoreError

    credentials = admin_credentials()
    if credentials is None or name in {a.name for a in store().annotators()}:
        return None
    try:
        store().add_annotator(name, credentials[1], role="admin")
    except StoreError as exc:  # e.g. a password the store's policy refuses
        return f"The admin account from ALIGNOPS_ADMIN_USER/ALIGNOPS_ADMIN_PASSWORD was not created: {exc}"
    return None


def ensure_admin() -> str | None:
    """The first admin comes from the environment (without one, nobody could add labelers in the dashboard);
    returns what went wrong, or None."""
    from alignops.feedback.store import database_url

    credentials = admin_credentials()
    return _bootstrap(database_url(), credentials[0]) if credentials else None


# --------------------------------------------------------------------------------------------------------
# Runs


@st.cache_data(ttl=FRESH_S, show_spinner=False)
def _runs(uri: str, stage: str | None) -> list[tracking.RunSummary]:
    return tracking.search_runs(stage)


def runs(stage: str | None = None) -> list[tracking.RunSummary]:
    """Every run, newest first (one stage's when given)."""
    return _runs(_uri(), stage)


@st.cache_data(ttl=FRESH_S, show_spinner=False)
def _history(uri: str, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return tracking.metric_history(run_id, key)


def metric_history(run_id: str, key: str) -> list[tuple[int, int, float]]:
    return _history(_uri(), run_id, key)


@st.cache_data(show_spinner=False, max_entries=256)
def _config(uri: str, run_id: str) -> dict[str, Any]:
    return tracking.run_config(run_id)


def run_config(run_id: str) -> dict[str, Any]:
    return _config(_uri(), run_id)


@st.cache_data(show_spinner=False, max_entries=256)
def _artifact(uri: str, run_id: str, path: str) -> bytes:
    return tracking.read_artifact(run_id, path)


def artifact(run_id: str, path: str) -> bytes:
    """One file a finished run logged (FileNotFoundError when absent)."""
    return _artifact(_uri(), run_id, path)


@st.cache_data(ttl=FRESH_S, show_spinner=False)
def _artifact_paths(uri: str, run_id: str) -> list[str]:
    return tracking.artifact_paths(run_id)


def artifact_paths(run_id: str) -> list[str]:
    return _artifact_paths(_uri(), run_id)


# --------------------------------------------------------------------------------------------------------
# Models and their evaluations


@st.cache_data(ttl=FRESH_S, show_spinner=False)
def _models(uri: str) -> list[tracking.RegisteredModelSummary]:
    return tracking.registered_models()


def models() -> list[tracking.RegisteredModelSummary]:
    return _models(_uri())


def versions() -> list[tracking.ModelVersionSummary]:
    """Every model version of every registered model."""
    return [v for m in models() for v in m.versions]


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage recorded about one model version."""

    run_id: str
    metrics: dict[str, float]  # eval/... and human/...
    baseline_uri: str | None  # what its win rate was measured against
    figures: list[str]  # PNG artifact paths
    samples_path: str | None  # samples.jsonl artifact path


@st.cache_data(show_spinner=False, max_entries=512)
def _evaluation(uri: str, model_uri: str, eval_run_id: str) -> Evaluation | None:
    found = tracking.evaluation_of(model_uri)
    if found is None:
        return None
    paths = tracking.artifact_paths(found["run_id"])
    samples = next((p for p in paths if p.rsplit("/", 1)[-1] == "samples.jsonl"), None)
    figures = [p for p in paths if p.lower().endswith(".png")]
    return Evaluation(found["run_id"], found["metrics"], found["baseline_uri"], figures, samples)


def evaluation(version: tracking.ModelVersionSummary) -> Evaluation | None:
    """The latest evaluation of a model version (the evaluate stage tags the version with its run), or None.
    Cached per evaluation run: a new evaluation retags the version and so is read afresh."""
    run_id = version.tags.get(tracking.EVAL_RUN_TAG)
    return _evaluation(_uri(), version.uri, run_id) if run_id else None


def samples(version: tracking.ModelVersionSummary) -> list[dict[str, Any]]:
    """The eval samples (prompt, completion, reward, judge score, ...) the evaluate stage saved for a version."""
    found = evaluation(version)
    if found is None or found.samples_path is None:
        return []
    return logic.parse_jsonl(artifact(found.run_id, found.samples_path).decode("utf-8"))


# --------------------------------------------------------------------------------------------------------
# Data versions: the history of data.dvc in git, datasheets, the latest validation report


@dataclass(frozen=True)
class DataVersion:
    md5: str  # DVC's md5 of the data folder: the data version
    size: int | None
    nfiles: int | None
    commit: str | None  # None: the work tree's data.dvc, not committed yet
    date: str
    subject: str


def _dvc_out(text: str) -> tuple[str, int | None, int | None] | None:
    meta = yaml.safe_load(text) or {}
    out = (meta.get("outs") or [{}])[0]
    return (out["md5"], out.get("size"), out.get("nfiles")) if out.get("md5") else None


def _git(*args: str, cwd: Path) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def data_versions(repo: str = ".") -> list[DataVersion]:
    """The data versions recorded in data.dvc, newest first: the work tree's (if it differs from the last
    commit) and every committed one. Reads git and the YAML; needs no DVC."""
    return _data_versions(str(Path(repo).resolve()))


@st.cache_data(ttl=FRESH_S, show_spinner=False)
def _data_versions(repo: str) -> list[DataVersion]:
    root = Path(repo)
    found: list[DataVersion] = []
    current = root / "data.dvc"
    log = _git("log", "--format=%H%x1f%aI%x1f%s", "--", "data.dvc", cwd=root) or ""
    committed: list[DataVersion] = []
    for line in log.splitlines():
        sha, date, subject = line.split("\x1f", 2)
        text = _git("show", f"{sha}:data.dvc", cwd=root)
        out = _dvc_out(text) if text else None
        if out is not None:
            committed.append(DataVersion(out[0], out[1], out[2], sha, date, subject))
    if current.is_file():
        out = _dvc_out(current.read_text(encoding="utf-8"))
        if out is not None and (not committed or committed[0].md5 != out[0]):
            found.append(DataVersion(out[0], out[1], out[2], None, "", "not committed yet (work tree)"))
    return found + committed


def datasheet(md5: str, repo: str = ".") -> str | None:
    """The datasheet of a data version: data/datasheet.md when data/ holds that version, else the one the
    data-build run of that version logged to MLflow."""
    from alignops.data import versioning

    local = Path(repo) / "data" / "datasheet.md"
    if versioning.data_version(Path(repo) / "data.dvc") == md5 and local.is_file():
        return local.read_text(encoding="utf-8")
    for run in runs("data-build"):
        if run.tags.get(tracking.DATA_VERSION_TAG) == md5:
            try:
                return artifact(run.run_id, "datasheet/datasheet.md").decode("utf-8")
            except FileNotFoundError:
                continue
    return None


def latest_validation() -> tuple[tracking.RunSummary, str] | None:
    """The newest data-validate run and its report text, or None when data was never validated."""
    for run in runs("data-validate"):
        try:
            return run, artifact(run.run_id, "validation/report.txt").decode("utf-8")
        except FileNotFoundError:
            continue
    return None


# --------------------------------------------------------------------------------------------------------
# Admin actions


def promote(uri: str, preset: str):
    """Run the promotion gate on a version (alignops.stages.promote, logged as a "promote" run) with the gate
    settings of `preset`; the registry lists are read afresh afterwards. Callers check the user is an admin."""
    from alignops.config import load_config
    from alignops.stages import promote as stage

    result = stage.run(load_config(preset), uri)
    _models.clear()
    _runs.clear()
    return result
