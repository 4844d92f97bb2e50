"""One Prefect task per stage, each around `alignops.stages.<stage>.run` (or the data build, or the base import);
the pipeline and the feedback loop call them in order (flows/pipeline.py, flows/feedback.py).

What a task adds to the stage it wraps, and nothing else:
- caching (alignops/cache.py): a stage whose inputs are unchanged returns the outputs recorded in MLflow;
- retries with backoff for transient errors (a tracking server briefly unreachable), none for bad data or
  configs, which a retry cannot fix;
- a Prefect table artifact with the stage's key metrics, for the Prefect UI.
Tasks pass configs, paths, run ids and model URIs, never tensors; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from alignops import cache
from alignops.config import PipelineConfig

Outputs = dict[str, Any]


def is_transient(exc: BaseException) -> bool:
    """Network hiccups are worth a retry; everything else (validation, config, source errors) is not."""
    chain = [exc, *(e for e in (exc.__cause__, exc.__context__) if e is not None)]
    names = {type(e).__name__ for e in chain}
    return any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain) or bool(
        names & {"ConnectTimeout", "ReadTimeout", "ConnectionError", "RemoteDisconnected"}
    )


def _retry_transient(task, task_run, state) -> bool:  # Prefect's retry_condition_fn signature
    return is_transient(state.result(raise_on_failure=False))


RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30], "retry_condition_fn": _retry_transient}


def with_section(cfg: PipelineConfig, section: str, **values: Any) -> PipelineConfig:
    """cfg with cfg.<section> fields set: how a stage learns the model versions made upstream."""
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=values)})


def cached(stage: str, cfg: PipelineConfig, body: Callable[[], tuple[str, Outputs, dict[str, float]]]) -> Outputs:
    """Reuse the recorded outputs of an identical earlier run of `stage`, or run `body` and record its outputs.
    body() -> (run id, outputs, metrics). The result says which happened ("cached")."""
    log = get_run_logger()
    key = cache.stage_key(stage, cfg)
    hit = cache.lookup(key)
    if hit is not None:
        log.info("%s: inputs unchanged (cache key %s), reusing run %s", stage, key, hit["run_id"])
        _summary(stage, hit, {}, cached=True)
        return {**hit, "cached": True}
    run_id, outputs, metrics = body()
    cache.record(run_id, key, outputs)
    _summary(stage, {**outputs, "run_id": run_id}, metrics, cached=False)
    return {**outputs, "run_id": run_id, "cached": False}


def _summary(stage: str, outputs: Outputs, metrics: dict[str, float], cached: bool) -> None:
    rows = [{"name": k, "value": str(v)} for k, v in outputs.items()]
    rows += [{"name": k, "value": f"{v:.4g}"} for k, v in sorted(metrics.items())]
    what = "cached: reused an identical earlier run" if cached else "ran"
    create_table_artifact(rows, key=f"{stage}-summary", description=f"{stage} ({what})")


# ------------------------------------------------------------------------------------------- tasks


@task(name=cache.DATA_BUILD, **RETRIES)
def build_data(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import data

    def body():
        r = data.build(cfg, progress=get_run_logger().info, parent_run_id=parent_run_id)
        counts = {f"{name}_{split}": n for name, splits in r.counts.items() for split, n in splits.items()}
        return r.run_id, {"data_version": r.data_version}, counts

    return cached(cache.DATA_BUILD, cfg, body)


@task(name="data-validate", **RETRIES)
def validate_data(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.data import versioning
    from alignops.stages import data

    def body():
        r = data.validate(cfg, parent_run_id=parent_run_id)
        return r.run_id, {"validated_version": versioning.data_version()}, {"success": float(r.success)}

    return cached("data-validate", cfg, body)


@task(name="tokenizer", **RETRIES)
def train_tokenizer(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import tokenizer

    def body():
        r = tokenizer.run(cfg, parent_run_id=parent_run_id)
        outputs = {"tokenizer": str(r.info.path), "tokenizer_sha256": r.info.sha256}
        return r.run_id, outputs, {f"chars_per_token_{k}": v for k, v in r.chars_per_token.items()}

    return cached("tokenizer", cfg, body)


def _trained(result) -> tuple[str, Outputs, dict[str, float]]:
    return result.run_id, {"model_uri": result.model_uri}, result.metrics


@task(name="pretrain", **RETRIES)
def pretrain_model(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import pretrain

    return cached("pretrain", cfg, lambda: _trained(pretrain.run(cfg, parent_run_id=parent_run_id)))


@task(name="base", **RETRIES)
def bring_base(cfg: PipelineConfig) -> Outputs:
    """A base from outside in place of tokenizer + pretrain (steps.base = fetch or import): registered once; a
    second call finds the same version registered and counts as reused."""
    from alignops import base_models, settings

    if cfg.steps.base == "fetch":
        r = base_models.fetch_and_register(cfg.steps.base_source, cfg.data.cache_dir or settings.home() / "cache")
    else:
        r = base_models.import_base(Path(cfg.steps.base_source))
    return {"model_uri": r.uri, "cached": not r.created}


@task(name="fewshot", **RETRIES)
def evaluate_fewshot(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import fewshot

    def body():
        r = fewshot.run(cfg, parent_run_id=parent_run_id)
        metrics = {name: value for row in r.table for name, value in row.as_metrics().items()}
        return r.run_id, {"model_uri": r.model_uri}, metrics

    return cached("fewshot", cfg, body)


@task(name="ner", **RETRIES)
def train_ner(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import ner

    return cached("ner", cfg, lambda: _trained(ner.run(cfg, parent_run_id=parent_run_id)))


@task(name="sft", **RETRIES)
def finetune(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import sft

    return cached("sft", cfg, lambda: _trained(sft.run(cfg, parent_run_id=parent_run_id)))


@task(name="reward", **RETRIES)
def train_reward(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import reward

    return cached("reward", cfg, lambda: _trained(reward.run(cfg, parent_run_id=parent_run_id)))


@task(name="ppo", **RETRIES)
def align(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import ppo

    return cached("ppo", cfg, lambda: _trained(ppo.run(cfg, parent_run_id=parent_run_id)))


@task(name="evaluate", **RETRIES)
def evaluate_model(cfg: PipelineConfig, parent_run_id: str | None = None) -> Outputs:
    from alignops.stages import evaluate, feedback

    def body():
        r = evaluate.run(cfg, parent_run_id=parent_run_id)
        # the responses become labeling tasks in the dashboard (this model against its baseline)
        queued = feedback.queue_samples(r.samples_path) if r.samples_path is not None else 0
        outputs = {"model_uri": r.model_uri, "baseline_uri": r.baseline_uri, "queued": queued}
        return r.run_id, outputs | {"samples": str(r.samples_path) if r.samples_path else None}, r.metrics

    return cached("evaluate", cfg, body)


@task(name="label-answers", **RETRIES)
def queue_label_answers(cfg: PipelineConfig, samples: str | None) -> Outputs:
    """steps.label_model's answers to the evaluation's prompts, queued for labeling beside the policy's."""
    from alignops.stages import feedback

    uri = feedback.label_model_uri(cfg)
    queued = feedback.queue_answers(uri, Path(samples), precision=cfg.trainer.precision) if samples else 0
    return {"model_uri": uri, "queued": queued}


@task(name="promote", **RETRIES)
def promote_model(cfg: PipelineConfig, challenger_uri: str, parent_run_id: str | None = None) -> Outputs:
    """Not cached by key: the decision depends on the registry's aliases now. A challenger that already is the
    champion has nothing to be promoted over, and counts as reused."""
    from alignops.stages import promote

    if promote.is_champion(challenger_uri):
        get_run_logger().info("promote: %s already is the champion", challenger_uri)
        return {"passed": True, "champion": challenger_uri, "cached": True}
    r = promote.run(cfg, challenger_uri, parent_run_id=parent_run_id)
    rows = [{"check": c.name, "status": c.status, "value": c.value, "threshold": c.threshold, "detail": c.detail}
            for c in r.checks]  # fmt: skip
    verdict = "promoted to champion" if r.passed else "kept as challenger"
    create_table_artifact(rows, key="promote-summary", description=f"promote: {challenger_uri} {verdict}")
    return {"passed": r.passed, "champion": r.champion_after, "run_id": r.run_id, "cached": False}
