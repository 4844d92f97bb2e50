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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from alignops import settings
from alignops.config import PipelineConfig, config_hash, to_yaml
from alignops.data import versioning

if TYPE_CHECKING:
    import mlflow as mlflow_module


# mlflow.set_tracking_uri copies the URI into MLFLOW_TRACKING_URI, for subprocesses. When that URI is our own
# default (SQLite under ALIGNOPS_HOME) it is also recorded in DEFAULT_URI_ENV, in the environment so that
# subprocesses inherit the record too: a later or a child's ALIGNOPS_HOME (another test, another project) is then
# not shadowed by it. A URI the user set is never recorded: the next call would take it for our default and
# fall back to SQLite under home (server mode logged all but its first call locally).
DEFAULT_URI_ENV = "ALIGNOPS_DEFAULT_TRACKING_URI"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if the user set it, else SQLite under ALIGNOPS_HOME."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env != os.environ.get(DEFAULT_URI_ENV):
        return env
    return _default_uri()


def _default_uri() -> str:
    return f"sqlite:///{settings.home() / 'mlflow.db'}"


def _mlflow() -> mlflow_module:
    settings.apply_offline_env()
    import mlflow

    uri = tracking_uri()
    if uri == _default_uri():
        os.environ[DEFAULT_URI_ENV] = uri
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
        "alignops.data_version": versioning.read_version(cfg.data.data_dir) or "none",  # the data actually read
        "alignops.config_hash": config_hash(section if section is not None else cfg),
        "alignops.pipeline_config_hash": config_hash(cfg),
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
    if not is_rank_zero():  # rank-zero guard: the other ranks train in step but track nothing
        yield StageRun(_NoTracking(), None)
        return
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


def lightning_logger(run_id: str | None):
    """Lightning's MLflow logger writing into an existing stage run (step-wise metrics); no logger (False) for
    run_id None, the non-zero ranks of a distributed run."""
    if run_id is None:  # rank-zero guard
        return False
    from lightning.pytorch.loggers import MLFlowLogger

    _mlflow()
    return MLFlowLogger(tracking_uri=tracking_uri(), run_id=run_id, log_model=False)


def _pyfunc_model():
    """The served form of a model folder: predict(prompts, params) -> completions. Built lazily so that
    importing this module does not import mlflow. (MLflow's "add type hints" warning is expected: a hint would
    make it infer the signature from the hint, which cannot carry the decoding params register_model declares.)"""
    import mlflow.pyfunc

    class GenerativeModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:
            from alignops.artifacts import META_FILE
            from alignops.inference import Generator

            folder = Path(context.artifacts["model"])
            self.tagger = None  # a ner model answers each text with its entities, as JSON
            if json.loads((folder / META_FILE).read_text(encoding="utf-8"))["kind"] == "tagger":
                from alignops.evaluation.ner import Tagger

                self.tagger = Tagger.from_dir(folder)
                return
            self.generator = Generator.from_dir(folder)

        def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
            from alignops import served_input  # checks the request before anything is tokenized

            prompts = served_input.prompts(model_input)
            if self.tagger is not None:
                found = self.tagger.entities(prompts)
                return [json.dumps(entities, ensure_ascii=False) for entities in found]
            config = served_input.decoding_config(params)
            try:
                return self.generator.complete(prompts, config)
            except ValueError as exc:  # e.g. max_new_tokens leaving no room for a prompt
                raise served_input.invalid(str(exc)) from None

    return GenerativeModel()


def set_served_model() -> None:
    """Hand the served form to MLflow; called by alignops/served_model.py, the models-from-code file MLflow
    runs when it loads a registered model (no pickled class: the code that serves is the installed alignops)."""
    from mlflow.models import set_model

    set_model(_pyfunc_model())


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
    from mlflow.models import ModelSignature, infer_signature

    # the default response length leaves at least half of the model's context to the prompt
    from alignops.artifacts import context_length

    params = {**SERVING_PARAMS, "max_new_tokens": min(SERVING_PARAMS["max_new_tokens"], context_length(model_dir) // 2)}
    inferred = infer_signature(["a prompt"], ["a completion"], params=params)
    # No input schema: MLflow would turn [5, null, {}] into the strings "5", "None", "{}" before predict sees
    # them; served_input checks the inputs instead, and the params schema still types the decoding params.
    signature = ModelSignature(inputs=None, outputs=inferred.outputs, params=inferred.params)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("served_model.py")),  # models-from-code, see set_served_model
        artifacts={"model": str(model_dir)},
        signature=signature,
        # saved as serving_input_example.json (a request to copy), and MLflow serves it once while logging:
        # a version that cannot be served is caught at registration (a fraction of a second on the tiny preset)
        input_example=(["Write a tweet."], {"max_new_tokens": 8}),
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
    """models:/name/latest -> models:/name/<newest trained version>, so lineage names an exact version.
    Compressed versions (alignops compress registers them beside their original) are derivatives, not the
    newest training result: `latest` skips them; name them by version or alias."""
    if not (uri.startswith("models:/") and uri.endswith("/latest")):
        return uri
    name = uri[len("models:/") : -len("/latest")]
    found = latest_uncompressed(name)
    if found is None:
        raise FileNotFoundError(f"No registered versions of {name!r}: run the stage that makes it first.")
    return found


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


# Stage cache (alignops/cache.py): finished stage runs tagged with their cache key and outputs


def filter_value(text: str) -> str:
    """`text` as a quoted value of an MLflow filter string: never raw user text. MLflow's filter grammar has no
    escape inside quotes, so a value with a single quote is double-quoted; one with both cannot be searched."""
    from alignops.errors import ModelError

    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ModelError(f"{text!r}: a name with both ' and \" cannot be searched in MLflow; rename it without one.")


def cached_runs(key: str) -> list[tuple[str, dict[str, Any]]]:
    """(run id, recorded outputs) of the finished runs tagged with this cache key, newest first."""
    mlflow = _mlflow()
    experiments = [e.experiment_id for e in mlflow.MlflowClient().search_experiments()]
    runs = mlflow.MlflowClient().search_runs(
        experiments,
        filter_string=f"tags.`alignops.cache_key` = {filter_value(key)} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    return [(r.info.run_id, json.loads(r.data.tags["alignops.outputs"])) for r in runs]


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    client = _mlflow().MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def model_version_exists(uri: str) -> bool:
    """Whether models:/<name>/<version> (or @alias) names a registered version."""
    try:
        model_version_tags(uri)
    except FileNotFoundError:
        return False
    return True


# --------------------------------------------------------------------------------------------------------
# Reading runs and models (the dashboard)
#
# Plain values out (dataclasses of str/int/float/dict), so the dashboard can cache them and never sees an
# MLflow object.


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
    client = _mlflow().MlflowClient()
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if not experiments:
        return []
    where = f"tags.`alignops.stage` = '{stage}'" if stage else ""
    newest_first = ["attributes.start_time DESC"]
    runs = client.search_runs(list(experiments), where, max_results=max_results, order_by=newest_first)
    return [
        RunSummary(
            run_id=r.info.run_id,
            name=r.info.run_name or r.info.run_id[:8],
            experiment=experiments.get(r.info.experiment_id, r.info.experiment_id),
            stage=r.data.tags.get("alignops.stage", ""),
            status=r.info.status,
            start_ms=r.info.start_time or 0,
            end_ms=r.info.end_time,
            parent_run_id=r.data.tags.get("mlflow.parentRunId"),
            tags={k: v for k, v in r.data.tags.items() if k.startswith("alignops.")},
            metrics=dict(r.data.metrics),
            params=dict(r.data.params),
        )
        for r in runs
    ]


def metric_history(run_id: str, key: str) -> list[tuple[int, int, float]]:
    """Every logged value of one metric of one run as (step, timestamp in ms, value), in step order."""
    history = _mlflow().MlflowClient().get_metric_history(run_id, key)
    return sorted((m.step, m.timestamp, m.value) for m in history)


def run_config(run_id: str) -> dict[str, Any]:
    """The resolved pipeline config a run logged (config.yaml), or its params when it logged none."""
    import yaml

    try:
        return yaml.safe_load(read_artifact(run_id, "config.yaml").decode("utf-8")) or {}
    except FileNotFoundError:
        return dict(_mlflow().MlflowClient().get_run(run_id).data.params)


def artifact_paths(run_id: str, path: str = "") -> list[str]:
    """The paths of every file a run logged under `path` (recursively), sorted."""
    client = _mlflow().MlflowClient()
    files: list[str] = []
    for info in client.list_artifacts(run_id, path or None):
        files.extend(artifact_paths(run_id, info.path) if info.is_dir else [info.path])
    return sorted(files)


def read_artifact(run_id: str, path: str) -> bytes:
    """The bytes of one file a run logged; FileNotFoundError when the run has no such file."""
    import tempfile

    mlflow = _mlflow()
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
    client = _mlflow().MlflowClient()
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
                uri=f"models:/{rm.name}/{v.version}",
                created_ms=v.creation_timestamp or 0,
                run_id=v.run_id or v.tags.get("alignops.run_id"),
                aliases=sorted(by_version.get(str(v.version), [])),
                tags=dict(v.tags),
            )
            for v in client.search_model_versions(f"name={filter_value(rm.name)}")
        ]
        versions.sort(key=lambda v: int(v.version), reverse=True)
        models.append(RegisteredModelSummary(rm.name, aliases, versions))
    return models


# --------------------------------------------------------------------------------------------------------
# Evaluation records (alignops/stages/evaluate.py writes them; the promotion gate and the dashboard read them)
#
# A model version's evaluation is an "evaluate" run; the version points at its latest one with two tags.

EVAL_RUN_TAG = "alignops.eval_run_id"
EVAL_BASELINE_TAG = "alignops.eval_baseline"


def _model_ref(uri: str) -> tuple[str, str | None, str | None]:
    """models:/name/<version|latest> or models:/name@alias -> (name, version or "latest" or None, alias or None)."""
    if not uri.startswith("models:/"):
        raise ValueError(f"{uri!r} is not a registry URI: use models:/<name>/<version> or models:/<name>@<alias>.")
    rest = uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, None, alias
    name, _, version = rest.partition("/")
    return name, version or None, None


def version_uri(uri: str) -> str:
    """The exact version a registry URI names: latest and aliases resolved (models:/name@champion ->
    models:/name/3); other URIs (runs:/, folders) unchanged. FileNotFoundError when nothing is registered."""
    if not uri.startswith("models:/"):
        return uri
    name, version, alias = _model_ref(uri)
    if alias is None:
        return pin_uri(uri) if version == "latest" else uri
    mlflow = _mlflow()
    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        raise FileNotFoundError(f"{uri}: no version of {name!r} has the alias {alias!r}.") from exc
    return f"models:/{name}/{found.version}"


def alias_uri(name: str, alias: str) -> str | None:
    """models:/<name>/<version> of the version holding `alias`, or None when no version holds it."""
    try:
        return version_uri(f"models:/{name}@{alias}")
    except FileNotFoundError:
        return None


def model_version_tags(uri: str) -> dict[str, str]:
    """The tags of a registered version (lineage, alignops.run_id of the run that made it, evaluation)."""
    name, _, _ = _model_ref(uri)
    version = _model_ref(version_uri(uri))[1]
    mlflow = _mlflow()
    try:
        return dict(mlflow.MlflowClient().get_model_version(name, version).tags)
    except mlflow.exceptions.MlflowException as exc:
        raise FileNotFoundError(f"{uri} is not a registered model version: {exc.message}") from exc


def set_model_version_tags(uri: str, tags: dict[str, str]) -> None:
    name, version, _ = _model_ref(version_uri(uri))
    client = _mlflow().MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def run_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric of a run."""
    return dict(_mlflow().MlflowClient().get_run(run_id).data.metrics)


def evaluation_of(model_uri: str) -> dict[str, Any] | None:
    """The latest evaluation of a registered version: {"run_id", "baseline_uri", "metrics": {name: value}};
    None when it has never been evaluated (or its evaluation run was deleted). baseline_uri is None when the
    evaluation had nothing to compare against."""
    tags = model_version_tags(model_uri)
    run_id = tags.get(EVAL_RUN_TAG)
    if not run_id:
        return None
    mlflow = _mlflow()
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    if run.info.lifecycle_stage == "deleted":
        return None
    baseline = tags.get(EVAL_BASELINE_TAG)
    return {
        "run_id": run_id,
        "baseline_uri": None if baseline in (None, "", "none") else baseline,
        "metrics": dict(run.data.metrics),
    }


# --------------------------------------------------------------------------------------------------------
# Registry aliases and promotion (alignops/stages/promote.py moves `champion` and `challenger`; `alignops serve`)
#
# The version lookups (version_uri, alias_uri, model_version_tags, set_model_version_tags) are above, with the
# evaluation records.


def set_alias(uri: str, alias: str) -> None:
    """Point `alias` at the version `uri` names; MLflow moves it off whichever version held it."""
    name, version, _ = _model_ref(version_uri(uri))
    _mlflow().MlflowClient().set_registered_model_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    """Remove `alias` from registered model `name`; nothing happens when no version holds it."""
    if alias_uri(name, alias) is not None:
        _mlflow().MlflowClient().delete_registered_model_alias(name, alias)


def registered_model_tags(name: str) -> dict[str, str]:
    """The tags of a registered model (not of one version): e.g. its champion history."""
    mlflow = _mlflow()
    try:
        return dict(mlflow.MlflowClient().get_registered_model(name).tags)
    except mlflow.exceptions.MlflowException as exc:
        raise FileNotFoundError(f"No registered model {name!r}: {exc.message}") from exc


def set_registered_model_tags(name: str, tags: dict[str, str]) -> None:
    client = _mlflow().MlflowClient()
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Serve a registered model with MLflow's scoring server (POST /invocations) until interrupted; returns
    the server's exit code. In this environment (`--env-manager local`): the model needs alignops and torch,
    which a fresh virtualenv would have to install."""
    import sys

    # MLflow starts the server as `bash -c "exec uvicorn ..."`: uvicorn must be on PATH even when this Python's
    # environment was never activated (.venv/bin/alignops called by its path)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(), "PATH": path}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
               "-h", host, "-p", str(port)]  # fmt: skip
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except KeyboardInterrupt:  # Ctrl-C reached the server too (same process group); it stops by itself
        return 0


# --------------------------------------------------------------------------------------------------------
# Compression (alignops/stages/compress.py registers int8, pruned and distilled versions beside the original)

COMPRESSION_TAG = "alignops.compression"  # int8 | pruned-<sparsity> | distilled; absent on uncompressed versions


def latest_uncompressed(name: str) -> str | None:
    """models:/<name>/<version> of the newest version of `name` without the compression tag; None when there
    is none (or no registered model `name`)."""
    versions = _mlflow().MlflowClient().search_model_versions(f"name={filter_value(name)}")
    plain = [int(v.version) for v in versions if COMPRESSION_TAG not in (v.tags or {})]
    return f"models:/{name}/{max(plain)}" if plain else None


# Bases fetched or imported (alignops/base_models.py): one registered model per model, never shared by two
# architectures, so a preset's `models:/<prefix>-base/latest` cannot silently switch families.
BASE_MODEL_TYPE_TAG = "alignops.model_type"  # on the registered model: the transformers model_type of its versions
BASES_EXPERIMENT = "alignops-bases"  # where the registering runs of fetched/imported bases are recorded


def register_base(model_dir: Path, registered_name: str, lineage: dict[str, str], model_type: str) -> tuple[str, str]:
    """Register a base model folder as a new version of `registered_name`; returns (URI, version).
    Refused, before anything is written, when that name already holds another architecture."""
    mlflow = _mlflow()
    try:
        held = registered_model_tags(registered_name).get(BASE_MODEL_TYPE_TAG)
    except FileNotFoundError:
        held = None
    if held is not None and held != model_type:
        raise ValueError(
            f"the registered model {registered_name!r} holds {held!r} models, this one is {model_type!r}: a "
            f"preset reading models:/{registered_name}/latest would silently switch architecture"
        )
    # nested: under the pipeline run in its `base` step; top-level alone (`alignops model import`)
    with mlflow.start_run(
        experiment_id=experiment_id(BASES_EXPERIMENT), run_name=f"base-{registered_name}", nested=True
    ):
        mlflow.set_tags({"alignops.stage": "base", **lineage})
        uri, version = register_model(model_dir, registered_name, lineage)
    set_registered_model_tags(registered_name, {BASE_MODEL_TYPE_TAG: model_type})
    return uri, version


def find_model_version(name: str, tag: str, value: str) -> str | None:
    """The newest version of registered model `name` whose tag `tag` is `value`, as models:/name/version."""
    client = _mlflow().MlflowClient()
    versions = client.search_model_versions(f"name={filter_value(name)}")
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if v.tags.get(tag) == value:
            return f"models:/{name}/{v.version}"
    return None
