"""The pipeline as one Prefect flow, under one MLflow parent run with a nested run per stage:

    data build -> validate -> tokenizer -> pretrain -> SFT -> reward model -> PPO

    alignops run --preset tiny           # or: python -m flows.pipeline tiny

Tasks pass configs, paths, run ids and model URIs, never tensors: each training stage is told the exact model
version the previous one registered. Transient failures (a tracking server or PyPI briefly
unreachable) are retried with backoff; bad data and bad configs fail at once, since a retry cannot fix them.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger, task

from alignops import tracking
from alignops.config import PipelineConfig, load_config
from alignops.stages import data, ppo, pretrain, reward, sft, tokenizer


def is_transient(exc: BaseException) -> bool:
    """Network hiccups are worth a retry; everything else (validation, config, source errors) is not."""
    chain = [exc, *(e for e in (exc.__cause__, exc.__context__) if e is not None)]
    names = {type(e).__name__ for e in chain}
    return any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain) or bool(
        names & {"ConnectTimeout", "ReadTimeout", "ConnectionError", "RemoteDisconnected"}
    )


def _retry_transient(task, task_run, state) -> bool:  # Prefect's retry_condition_fn signature
    return is_transient(state.result(raise_on_failure=False))


RETRIES = {"retries": 3, "retry_delay_seconds": [5, 20, 60], "retry_condition_fn": _retry_transient}


@task(name="data-build", **RETRIES)
def build_data(cfg: PipelineConfig, parent_run_id: str) -> str:
    return data.build(cfg, progress=get_run_logger().info, parent_run_id=parent_run_id).data_version


@task(name="data-validate", **RETRIES)
def validate_data(cfg: PipelineConfig, parent_run_id: str) -> str:
    return data.validate(cfg, parent_run_id=parent_run_id).run_id


@task(name="tokenizer", **RETRIES)
def train_tokenizer(cfg: PipelineConfig, parent_run_id: str) -> str:
    return str(tokenizer.run(cfg, parent_run_id=parent_run_id).info.path)


@task(name="pretrain", **RETRIES)
def pretrain_model(cfg: PipelineConfig, parent_run_id: str) -> str:
    return pretrain.run(cfg, parent_run_id=parent_run_id).model_uri


@task(name="sft", **RETRIES)
def finetune(cfg: PipelineConfig, parent_run_id: str, base_uri: str) -> str:
    return sft.run(_with(cfg, "sft", base_model=base_uri), parent_run_id=parent_run_id).model_uri


@task(name="reward", **RETRIES)
def train_reward(cfg: PipelineConfig, parent_run_id: str, sft_uri: str) -> str:
    return reward.run(_with(cfg, "reward", base_model=sft_uri), parent_run_id=parent_run_id).model_uri


@task(name="ppo", **RETRIES)
def align(cfg: PipelineConfig, parent_run_id: str, sft_uri: str, reward_uri: str) -> str:
    cfg = _with(cfg, "ppo", base_model=sft_uri, reward_model=reward_uri)
    return ppo.run(cfg, parent_run_id=parent_run_id).model_uri


def _with(cfg: PipelineConfig, section: str, **values: str) -> PipelineConfig:
    """cfg with cfg.<section> fields set: how a stage learns the model versions made upstream in this run."""
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=values)})


STAGES = ("data", "tokenizer", "pretrain", "sft", "reward", "ppo")


@flow(name="alignops-pipeline")
def pipeline(preset: str = "small", overrides: list[str] | None = None, to: str = "ppo") -> dict[str, Any]:
    """Run the stages in order up to and including `to` (one of STAGES)."""
    if to not in STAGES:
        raise ValueError(f"Unknown stage {to!r}; choose one of {STAGES}.")
    last = STAGES.index(to)
    cfg = load_config(preset, overrides or [])
    out: dict[str, Any] = {}
    with tracking.pipeline_run(cfg) as parent:
        out["parent_run_id"] = parent
        out["data_version"] = build_data(cfg, parent)
        validate_data(cfg, parent)
        if last >= STAGES.index("tokenizer"):
            out["tokenizer"] = train_tokenizer(cfg, parent)
        if last >= STAGES.index("pretrain"):
            out["base"] = pretrain_model(cfg, parent)
        if last >= STAGES.index("sft"):
            out["sft"] = finetune(cfg, parent, out["base"])
        if last >= STAGES.index("reward"):
            out["reward"] = train_reward(cfg, parent, out["sft"])
        if last >= STAGES.index("ppo"):
            out["policy"] = align(cfg, parent, out["sft"], out["reward"])
    return out


if __name__ == "__main__":
    print(pipeline(*sys.argv[1:2]))
