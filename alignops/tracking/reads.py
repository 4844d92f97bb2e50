"""Reads for the dashboard: runs, metric histories, logged configs and artifacts, registered models with their
versions (a version's evaluation: evaluations.py). Plain values out (dataclasses of
str/int/float/dict), so the dashboard can cache them and never sees an MLflow object.

    tracking.search_runs(stage="evaluate")           # newest first
    tracking.registered_models()                    # every model, its versions, aliases and tags
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops.tracking.backend import connect, filter_value
from alignops.tracking.refs import ModelRef
from alignops.tracking.tags import PREFIX, RUN_ID_TAG, STAGE_TAG


@dataclass(frozen=True)
class RunSummary:
    """One run as the dashboard lists it."""

    run_id: str
    name: str
    experiment: str
    stage: str  # the alignops.stage tag: "pipeline" for a parent run, else the stage ("pretrain", "evaluate", ...)
    status: str  # RUNNING, FINISHED, FAILED, KILLED
    start_ms: int
    end_ms: int | None
    parent_run_id: str | None
    tags: dict[str, str]  # the alignops.* lineage tags
    metrics: dict[str, float]  # the latest value of each metric
    params: dict[str, str]


def search_runs(stage: str | None = None, max_results: int = 1000) -> list[RunSummary]:
    """Runs of every experiment, newest first; only one stage's runs when `stage` is given."""
    client = connect().MlflowClient()
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if not experiments:
        return []
    where = f"tags.`{STAGE_TAG}` = {filter_value(stage)}" if stage else ""
    newest_first = ["attributes.start_time DESC"]
    runs = client.search_runs(list(experiments), where, max_results=max_results, order_by=newest_first)
    return [
        RunSummary(
            run_id=r.info.run_id,
            name=r.info.run_name or r.info.run_id[:8],
            experiment=experiments.get(r.info.experiment_id, r.info.experiment_id),
            stage=r.data.tags.get(STAGE_TAG, ""),
            status=r.info.status,
            start_ms=r.info.start_time or 0,
            end_ms=r.info.end_time,
            parent_run_id=r.data.tags.get("mlflow.parentRunId"),
            tags={k: v for k, v in r.data.tags.items() if k.startswith(PREFIX)},
            metrics=dict(r.data.metrics),
            params=dict(r.data.params),
        )
        for r in runs
    ]


def metric_history(run_id: str, key: str) -> list[tuple[int, int, float]]:
    """Every logged value of one metric of one run as (step, timestamp in ms, value), in step order."""
    history = connect().MlflowClient().get_metric_history(run_id, key)
    return sorted((m.step, m.timestamp, m.value) for m in history)


def run_config(run_id: str) -> dict[str, Any]:
    """The resolved pipeline config a run logged (config.yaml), or its params when it logged none."""
    import yaml

    try:
        return yaml.safe_load(read_artifact(run_id, "config.yaml").decode("utf-8")) or {}
    except FileNotFoundError:
        return dict(connect().MlflowClient().get_run(run_id).data.params)


def artifact_paths(run_id: str, path: str = "") -> list[str]:
    """The paths of every file a run logged under `path` (recursively), sorted."""
    client = connect().MlflowClient()
    files: list[str] = []
    for info in client.list_artifacts(run_id, path or None):
        files.extend(artifact_paths(run_id, info.path) if info.is_dir else [info.path])
    return sorted(files)


def read_artifact(run_id: str, path: str) -> bytes:
    """The bytes of one file a run logged; FileNotFoundError when the run has no such file."""
    import tempfile

    mlflow = connect()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.MlflowClient().download_artifacts(run_id, path, tmp)
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            raise FileNotFoundError(f"Run {run_id} has no artifact {path!r}: {exc}") from exc
        if not Path(local).is_file():
            raise FileNotFoundError(f"Run {run_id}: artifact {path!r} is a folder, not a file.")
        return Path(local).read_bytes()


@dataclass(frozen=True)
class ModelVersionSummary:
    name: str
    version: str
    uri: str  # models:/<name>/<version>
    created_ms: int
    run_id: str | None
    aliases: list[str]
    tags: dict[str, str]  # lineage: alignops.data_version, alignops.parent_model, alignops.eval_run_id, ...


@dataclass(frozen=True)
class RegisteredModelSummary:
    name: str
    aliases: dict[str, str]  # alias -> version
    versions: list[ModelVersionSummary]  # newest first


def registered_models() -> list[RegisteredModelSummary]:
    """Every registered model with its versions, their aliases and tags, sorted by name."""
    client = connect().MlflowClient()
    models: list[RegisteredModelSummary] = []
    # search_model_versions does not fill aliases; the registered model has them (alias -> version)
    for rm in sorted(client.search_registered_models(max_results=1000), key=lambda m: m.name):
        aliases = {alias: str(version) for alias, version in (rm.aliases or {}).items()}
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        versions = [
            ModelVersionSummary(
                name=rm.name,
                version=str(v.version),
                uri=ModelRef.of(rm.name, v.version).uri,
                created_ms=v.creation_timestamp or 0,
                run_id=v.run_id or v.tags.get(RUN_ID_TAG),
                aliases=sorted(by_version.get(str(v.version), [])),
                tags=dict(v.tags),
            )
            for v in client.search_model_versions(f"name={filter_value(rm.name)}")
        ]
        versions.sort(key=lambda v: int(v.version), reverse=True)
        models.append(RegisteredModelSummary(rm.name, aliases, versions))
    return models


def run_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric of a run."""
    return dict(connect().MlflowClient().get_run(run_id).data.metrics)
