"""The one module that talks to MLflow: runs, lineage tags, datasets, artifacts.

Embedded default: a SQLite store and an artifact folder under ALIGNOPS_HOME. Server mode: set
MLFLOW_TRACKING_URI (read when a run starts, never at import). One parent run per pipeline run, one nested
run per stage, each tagged with the stage, the git commit, the data version (md5 in data.dvc) and the
config hash, with the resolved config as an artifact:

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

from alignops import settings
from alignops.config import PipelineConfig, config_hash, to_yaml
from alignops.data import versioning

if TYPE_CHECKING:
    import mlflow as mlflow_module


# mlflow.set_tracking_uri copies the URI into MLFLOW_TRACKING_URI for subprocesses; remember what we gave it,
# so a later ALIGNOPS_HOME (another test, another project) is not shadowed by our own earlier default.
_last_set: str | None = None


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if the user set it, else SQLite under ALIGNOPS_HOME."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env != _last_set:
        return env
    return f"sqlite:///{settings.home() / 'mlflow.db'}"


def _mlflow() -> mlflow_module:
    global _last_set
    settings.apply_offline_env()
    import mlflow

    uri = tracking_uri()
    _last_set = uri
    mlflow.set_tracking_uri(uri)
    return mlflow


def experiment_id(name: str) -> str:
    """The experiment's id, created on first use. With a local store its artifacts go under home, not ./mlruns."""
    mlflow = _mlflow()
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if not tracking_uri().startswith(("http://", "https://", "databricks")):
        location = (settings.home() / "mlartifacts" / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


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
        "alignops.stage": stage,
        "alignops.preset": cfg.name,
        "alignops.git_commit": git_commit(),
        "alignops.data_version": versioning.data_version() or "none",
        "alignops.config_hash": config_hash(section if section is not None else cfg),
        "alignops.pipeline_config_hash": config_hash(cfg),
    }


class StageRun:
    """Handle on the active stage run; thin so stages never import mlflow themselves."""

    def __init__(self, mlflow: mlflow_module, run_id: str) -> None:
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
def pipeline_run(cfg: PipelineConfig, run_name: str | None = None) -> Iterator[str]:
    """The parent run of one pipeline run; stage runs started inside it nest under it."""
    mlflow = _mlflow()
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
    mlflow = _mlflow()
    if resume_run_id is not None:
        with mlflow.start_run(run_id=resume_run_id) as run:
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
        yield StageRun(mlflow, run.info.run_id)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return flat


def lightning_logger(run_id: str):
    """Lightning's MLflow logger writing into an existing stage run (step-wise metrics)."""
    from lightning.pytorch.loggers import MLFlowLogger

    _mlflow()
    return MLFlowLogger(tracking_uri=tracking_uri(), run_id=run_id, log_model=False)


def _pyfunc_model():
    """The served form of a model folder: predict(prompts, params) -> completions. Built lazily so that
    importing this module does not import mlflow."""
    import mlflow.pyfunc

    class GenerativeModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:
            from alignops.inference import Generator

            self.generator = Generator.from_dir(Path(context.artifacts["model"]))

        def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
            from alignops.inference import decoding

            if hasattr(model_input, "columns"):  # a DataFrame: the "prompt" column, or the only one
                column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
                prompts = list(model_input[column])
            else:
                prompts = list(model_input)
            params = dict(params or {})
            strategy = params.pop("strategy", "greedy")
            return self.generator.complete([str(p) for p in prompts], decoding(strategy, **params))

    return GenerativeModel()


# Decoding parameters a served model accepts, with their defaults (MLflow needs the types up front).
SERVING_PARAMS = {
    "strategy": "greedy",
    "max_new_tokens": 64,
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "repetition_penalty": 1.0,
    "num_beams": 1,
    "seed": 0,
}


def register_model(
    model_dir: Path, registered_name: str, lineage: dict[str, str], parent_uri: str | None = None
) -> tuple[str, str]:
    """Log model_dir as an MLflow pyfunc model in the active run and register it; returns (URI, version).

    The version carries its lineage as tags: data version, tokenizer, parent model, config hash, git commit."""
    mlflow = _mlflow()
    from mlflow.models import infer_signature

    signature = infer_signature(["a prompt"], ["a completion"], params=SERVING_PARAMS)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=_pyfunc_model(),
        artifacts={"model": str(model_dir)},
        signature=signature,
        pip_requirements=["alignops", "torch==2.13.0", "tokenizers", "safetensors"],  # inference costs 11 s
        registered_model_name=registered_name,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    tags = {**lineage, "alignops.parent_model": parent_uri or "none", "alignops.run_id": info.run_id}
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, version, key, value)
    return f"models:/{registered_name}/{version}", version


def pin_uri(uri: str) -> str:
    """models:/name/latest -> models:/name/<newest version>, so lineage names an exact version."""
    if not (uri.startswith("models:/") and uri.endswith("/latest")):
        return uri
    name = uri[len("models:/") : -len("/latest")]
    versions = _mlflow().MlflowClient().search_model_versions(f"name='{name}'")
    if not versions:
        raise FileNotFoundError(f"No registered versions of {name!r}: run the stage that makes it first.")
    return f"models:/{name}/{max(int(v.version) for v in versions)}"


def resolve_model(uri: str, dst: Path | None = None) -> Path:
    """The local folder of a model URI (models:/name/version, models:/name@alias, models:/name/latest,
    runs:/...), downloaded from the tracking server's artifact store; or a local folder as it is."""
    if Path(uri).is_dir():
        return Path(uri)
    mlflow = _mlflow()
    uri = pin_uri(uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst) if dst else None))
    except mlflow.exceptions.MlflowException as exc:
        raise FileNotFoundError(f"Cannot resolve model {uri!r}: {exc.message}") from exc
    found = next((p.parent for p in sorted(local.rglob("alignops.json"))), None)
    if found is None:
        raise FileNotFoundError(f"{uri} holds no alignops model folder (no alignops.json).")
    return found
