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

from alignops import cache, tracking
from alignops.config import PipelineConfig, load_config
from flows import pipeline as chain
from flows import stages


@task(name="feedback-collect", **stages.RETRIES)
def collect_labels(cfg: PipelineConfig, parent_run_id: str) -> dict[str, Any]:
    from alignops.stages import feedback

    r = feedback.collect(cfg, parent_run_id=parent_run_id)
    if r.data_version is not None:
        # the data for this build config is now the built data plus these labels: a later pipeline run reuses it
        cache.record(r.run_id, cache.stage_key("data-build", cfg), {"data_version": r.data_version})
    return {"new_labels": r.new_labels, "data_version": r.data_version, "message": r.message}


@flow(name="alignops-feedback")
def feedback(preset: str = "tiny", overrides: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(preset, overrides or [])
    log = get_run_logger()
    with tracking.pipeline_run(cfg, run_name=f"feedback-{cfg.name}") as parent:
        collected = collect_labels(cfg, parent)
        log.info(collected["message"])
        out: dict[str, Any] = {"parent_run_id": parent, "ran": [], "cached": [], **collected}
        if collected["data_version"] is None:
            tracking.set_run_tags(parent, {tracking.FEEDBACK_TAG: "no-op"})
            return out | {"retrained": False}
        stages.validate_data(cfg, parent)
        out["sft"] = _deployed_sft(cfg)
        for stage in ("reward", "ppo", "evaluate", "promote"):
            result = chain.run_stage(stage, cfg, parent, out)
            out["cached" if result.get("cached") else "ran"].append(stage)
    return out | {"retrained": True}


def _deployed_sft(cfg: PipelineConfig) -> str:
    """The SFT model the champion policy was trained from; the newest SFT model if there is no champion."""
    policy = f"{cfg.tracking.model_prefix}-policy"
    champion = tracking.alias_uri(policy, "champion")
    if champion is not None:
        parent = tracking.model_version_tags(champion).get(tracking.PARENT_MODEL_TAG)
        if parent and parent != "none":
            return parent
    return tracking.pin_uri(f"models:/{cfg.tracking.model_prefix}-sft/latest")


if __name__ == "__main__":
    print(feedback(*sys.argv[1:2]))
