"""The human-feedback loop as a Prefect flow (scheduled nightly in prefect.yaml):

    new dashboard rankings -> rankings dataset -> validate -> new DVC version
        -> reward model -> PPO -> evaluate -> promotion gate

    alignops feedback --preset tiny          # or: python -m flows.feedback tiny

With fewer new labels than feedback.min_new_labels it stops after looking, and says so. The reward model and
the policy start from the SFT model behind the current champion policy (or the newest SFT model when there
is no champion yet), so the loop improves what is deployed rather than whatever was trained last.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger, task

from alignops import tracking
from alignops.config import PipelineConfig, load_config
from flows import pipeline as chain
from flows import tasks


@task(name="feedback-collect", **tasks.RETRIES)
def collect_labels(cfg: PipelineConfig, parent_run_id: str) -> dict[str, Any]:
    from alignops.stages import feedback

    r = feedback.collect(cfg, parent_run_id=parent_run_id)
    return {"new_labels": r.new_labels, "data_version": r.data_version, "message": r.message}


@flow(name="alignops-feedback")
def feedback(preset: str = "tiny", overrides: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(preset, overrides or [])
    with tracking.pipeline_run(cfg, run_name=f"feedback-{cfg.name}") as parent:
        collected = collect_labels(cfg, parent)
        get_run_logger().info(collected["message"])
        if collected["data_version"] is None:
            tracking.set_run_tags(parent, {tracking.FEEDBACK_TAG: "no-op"})
            return {"parent_run_id": parent, "ran": [], "cached": [], **collected, "retrained": False}
        tasks.validate_data(cfg, parent)
        from alignops.stages.feedback import deployed_sft

        start = chain.Made(parent_run_id=parent, data_version=collected["data_version"], sft=deployed_sft(cfg))
        made = chain.walk(cfg, start, chain.steps_between(cfg, "reward", "promote"))
    return made.as_result() | collected | {"retrained": True}


if __name__ == "__main__":
    print(feedback(*sys.argv[1:2]))
