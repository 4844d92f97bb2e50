"""The pipeline as one Prefect flow: build + version the data, validate it, train the tokenizer, all under one
MLflow parent run with a nested run per stage. The training stages join this flow as they land.

    alignops run --preset tiny           # or: python -m flows.pipeline tiny

Tasks pass configs, paths and run ids, never tensors. Transient failures (a tracking server or PyPI briefly
unreachable) are retried with backoff; bad data and bad configs fail at once, since a retry cannot fix them.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger, task

from alignops import tracking
from alignops.config import PipelineConfig, load_config
from alignops.stages import data, tokenizer


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


@flow(name="alignops-pipeline")
def pipeline(preset: str = "small", overrides: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(preset, overrides or [])
    with tracking.pipeline_run(cfg) as parent:
        version = build_data(cfg, parent)
        validate_data(cfg, parent)
        tokenizer_path = train_tokenizer(cfg, parent)
    return {"parent_run_id": parent, "data_version": version, "tokenizer": tokenizer_path}


if __name__ == "__main__":
    print(pipeline(*sys.argv[1:2]))
