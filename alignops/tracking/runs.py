"""Runs: one MLflow parent run per pipeline run, one nested run per stage, each tagged with its lineage (the
stage, the git commit, the data version (md5 in data.dvc) and the config hash), with the resolved config as an
artifact; and the stage cache's records on finished runs.

    with tracking.pipeline_run(cfg):
        with tracking.stage_run("data-build", cfg, cfg.data) as run:
            run.log_metrics({"data/corpus_train": 1234})
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from alignops.config import PipelineConfig, config_hash, to_yaml
from alignops.data import versioning
from alignops.tracking.backend import connect, experiment_id, filter_value, tracking_uri
from alignops.tracking.tags import (
    CACHE_KEY_TAG,
    CONFIG_HASH_TAG,
    DATA_VERSION_TAG,
    GIT_COMMIT_TAG,
    OUTPUTS_TAG,
    PIPELINE_CONFIG_HASH_TAG,
    PRESET_TAG,
    STAGE_TAG,
)

if TYPE_CHECKING:
    import mlflow as mlflow_module


def git_commit(cwd: Path | None = None) -> str:
    """HEAD's commit, with '-dirty' when the work tree has changes; 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def lineage_tags(stage: str, cfg: PipelineConfig, section: BaseModel | None = None) -> dict[str, str]:
    return {
        STAGE_TAG: stage,
        PRESET_TAG: cfg.name,
        GIT_COMMIT_TAG: git_commit(),
        DATA_VERSION_TAG: versioning.read_version(cfg.data.data_dir) or "none",  # the data actually read
        CONFIG_HASH_TAG: config_hash(section if section is not None else cfg),
        PIPELINE_CONFIG_HASH_TAG: config_hash(cfg),
    }


# ---- Distributed training: only global rank 0 tracks ------------------------------------------------------
# Lightning's `ddp` strategy starts the other ranks by running the same command again, so every rank runs a
# stage from its first line. Rank 0 alone creates runs, logs and registers; on the other ranks stage_run and
# pipeline_run hand out a StageRun that does nothing (run_id None) and lightning_logger gives no logger.


def is_rank_zero() -> bool:
    """Is this process global rank 0 of a distributed run, or not part of one? Read from the environment, so it
    answers before the process group exists: LOCAL_RANK (set on every rank Lightning or torchrun starts), then
    the global rank of torchrun (RANK), SLURM (SLURM_PROCID) or LSF, else the node rank (NODE_RANK)."""
    if int(os.environ.get("LOCAL_RANK", 0)) != 0:
        return False
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key]) == 0
    return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0))) == 0


class _NoTracking:
    """Stands in for mlflow on the non-zero ranks of a distributed run: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class StageRun:
    """Handle on the active stage run; thin so stages never import mlflow themselves. On the non-zero ranks of a
    distributed run its run_id is None and its methods do nothing (see is_rank_zero)."""

    def __init__(self, mlflow: mlflow_module | _NoTracking, run_id: str | None) -> None:
        self._mlflow = mlflow
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        self._mlflow.log_params(_flatten(params))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        self._mlflow.log_dict(data, name)

    def log_text(self, text: str, name: str) -> None:
        self._mlflow.log_text(text, name)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self._mlflow.log_artifacts(str(path), artifact_path)
        else:
            self._mlflow.log_artifact(str(path), artifact_path)

    def log_datasets(self, files: dict[str, tuple[Path, str]], context: str) -> None:
        """Record data files as MLflow dataset inputs: name -> (path, digest). Only metadata is stored."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource

        datasets = [
            MetaDataset(source=LocalArtifactDatasetSource(str(path)), name=name, digest=digest[:36])
            for name, (path, digest) in sorted(files.items())
        ]
        self._mlflow.log_inputs(datasets=datasets, contexts=[context] * len(datasets), tags_list=[None] * len(datasets))


@contextmanager
def pipeline_run(cfg: PipelineConfig, run_name: str | None = None) -> Iterator[str | None]:
    """The parent run of one pipeline run; stage runs started inside it nest under it. None on the non-zero
    ranks of a distributed run."""
    if not is_rank_zero():  # rank-zero guard: see is_rank_zero
        yield None
        return
    mlflow = connect()
    with mlflow.start_run(
        experiment_id=experiment_id(cfg.tracking.experiment), run_name=run_name or f"pipeline-{cfg.name}"
    ) as run:
        mlflow.set_tags(lineage_tags("pipeline", cfg))
        mlflow.log_text(to_yaml(cfg), "config.yaml")
        yield run.info.run_id


@contextmanager
def stage_run(
    stage: str,
    cfg: PipelineConfig,
    section: BaseModel | None = None,
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
) -> Iterator[StageRun]:
    """One stage's run, marked FAILED on error. Nested under `parent_run_id` when given (a flow passes it:
    MLflow's active run is per thread, and a flow's tasks may run in other threads), else under the active
    run of this thread, else top-level. `resume_run_id` continues an interrupted run instead of a new one."""
    if not is_rank_zero():  # rank-zero guard: the other ranks train in step but track nothing
        yield StageRun(_NoTracking(), None)
        return
    mlflow = connect()
    if resume_run_id is not None:
        with mlflow.start_run(run_id=resume_run_id) as run, _peak_memory(mlflow):
            yield StageRun(mlflow, run.info.run_id)
        return
    nested = parent_run_id is not None or mlflow.active_run() is not None
    with mlflow.start_run(
        experiment_id=experiment_id(cfg.tracking.experiment), run_name=stage, nested=nested, parent_run_id=parent_run_id
    ) as run:
        mlflow.set_tags(lineage_tags(stage, cfg, section))
        if section is not None:
            mlflow.log_params(_flatten(section.model_dump(mode="json")))
        mlflow.log_text(to_yaml(cfg), "config.yaml")
        with _peak_memory(mlflow):
            yield StageRun(mlflow, run.info.run_id)


@contextmanager
def _peak_memory(mlflow) -> Iterator[None]:
    """The stage's own peak memory (alignops.memory) logged on its run, also when it fails: what a machine needs to
    run it."""
    from alignops.memory import peak_memory_mib

    peak: dict[str, float] = {}
    try:
        with peak_memory_mib() as peak:
            yield
    finally:
        if peak:
            mlflow.log_metrics(peak)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return flat


def lightning_logger(run_id: str | None):
    """Lightning's MLflow logger writing into an existing stage run (step-wise metrics); no logger (False) for
    run_id None, the non-zero ranks of a distributed run."""
    if run_id is None:  # rank-zero guard
        return False
    from lightning.pytorch.loggers import MLFlowLogger

    connect()
    return MLFlowLogger(tracking_uri=tracking_uri(), run_id=run_id, log_model=False)


def cached_runs(key: str) -> list[tuple[str, dict[str, Any]]]:
    """(run id, recorded outputs) of the finished runs tagged with this cache key, newest first."""
    mlflow = connect()
    experiments = [e.experiment_id for e in mlflow.MlflowClient().search_experiments()]
    runs = mlflow.MlflowClient().search_runs(
        experiments,
        filter_string=f"tags.`{CACHE_KEY_TAG}` = {filter_value(key)} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    return [(r.info.run_id, json.loads(r.data.tags[OUTPUTS_TAG])) for r in runs]


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    client = connect().MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
