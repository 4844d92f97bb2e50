"""The whole recipe as one Prefect flow, under one MLflow parent run with a nested run per stage:

    data (build + validate) -> tokenizer -> pretrain -> SFT -> reward model -> PPO -> evaluate -> promote

    alignops run --preset tiny [--from sft] [--to evaluate]     # or: python -m flows.pipeline tiny

Each stage is a subflow (flows/stages.py) told the exact model versions made upstream, so a cached stage
(same inputs) is skipped, and a changed stage re-runs itself and everything downstream of it. Stages before
--from are not run: their newest registered versions are used. A failure names its stage; since only the
last stage moves aliases, a failed run leaves the registry's `champion` untouched.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from alignops import tracking
from alignops.config import ConfigError, PipelineConfig, load_config
from alignops.tracking_server import require_reachable
from flows import stages
from flows.stages import with_section

STAGES = ("data", "tokenizer", "pretrain", "sft", "reward", "ppo", "evaluate", "promote")
# The registered model each training stage makes, used when a run starts after it (--from).
REGISTERED = {"pretrain": "base", "sft": "sft", "reward": "reward", "ppo": "policy"}


@flow(name="alignops-pipeline")
def pipeline(
    preset: str = "tiny", overrides: list[str] | None = None, start: str = "data", to: str = "promote"
) -> dict[str, Any]:
    """Run the stages from `start` to `to` (both included; names in STAGES). Returns what each stage made,
    and which stages ran and which were reused from the cache."""
    first, last = stage_range(start, to)
    cfg = load_config(preset, overrides or [])
    require_reachable()  # before the parent run and the data checks: a missing server is named in seconds
    out: dict[str, Any] = {"ran": [], "cached": []}
    current = start
    with tracking.pipeline_run(cfg) as parent:
        out["parent_run_id"] = parent
        try:
            for current in STAGES[first : last + 1]:
                result = run_stage(current, cfg, parent, out)
                out["cached" if result.get("cached") else "ran"].append(current)
        except BaseException as exc:
            # The parent run says where it stopped; the exception keeps its type (the CLI maps it to a message).
            tracking.set_run_tags(parent, {tracking.FAILED_STAGE_TAG: current})
            exc.add_note(f"The pipeline stopped at stage '{current}'; aliases were not changed.")
            get_run_logger().error("stage %s failed: %s", current, exc)
            raise
        tracking.set_run_tags(
            parent, {tracking.RAN_TAG: ",".join(out["ran"]), tracking.CACHED_TAG: ",".join(out["cached"])}
        )
    return out


def stage_range(start: str, to: str) -> tuple[int, int]:
    """Indexes in STAGES of --from and --to; ConfigError when either is unknown or they are out of order. The CLI
    calls it before the flow starts (and so before Prefect's server)."""
    for name in (start, to):
        if name not in STAGES:
            raise ConfigError(f"Unknown stage {name!r}; choose one of {', '.join(STAGES)}.")
    first, last = STAGES.index(start), STAGES.index(to)
    if first > last:
        raise ConfigError(f"--from {start} comes after --to {to}; the order is {' -> '.join(STAGES)}.")
    return first, last


def run_stage(stage: str, cfg: PipelineConfig, parent: str, out: dict[str, Any]) -> dict:
    """Run one stage with the URIs made upstream in `out` (or the newest registered ones); record its outputs."""
    if stage == "data":
        result = stages.data_flow(cfg, parent)
        out["data_version"] = result["data_version"]
    elif stage == "tokenizer":
        result = stages.tokenizer_flow(cfg, parent)
        out["tokenizer"] = result["tokenizer"]
    elif stage == "pretrain":
        result = stages.pretrain_flow(cfg, parent)
        out["base"] = result["model_uri"]
    elif stage == "sft":
        result = stages.sft_flow(with_section(cfg, "sft", base_model=_made(cfg, out, "pretrain")), parent)
        out["sft"] = result["model_uri"]
    elif stage == "reward":
        result = stages.reward_flow(with_section(cfg, "reward", base_model=_made(cfg, out, "sft")), parent)
        out["reward"] = result["model_uri"]
    elif stage == "ppo":
        ppo_cfg = with_section(cfg, "ppo", base_model=_made(cfg, out, "sft"), reward_model=_made(cfg, out, "reward"))
        result = stages.ppo_flow(ppo_cfg, parent)
        out["policy"] = result["model_uri"]
    elif stage == "evaluate":
        eval_cfg = with_section(cfg, "evaluate", model=_made(cfg, out, "ppo"), reward_model=_made(cfg, out, "reward"))
        result = stages.evaluate_flow(eval_cfg, parent)
        out["evaluation_run_id"] = result["run_id"]
    else:
        result = stages.promote_flow(cfg, _made(cfg, out, "ppo"), parent)
        out["promoted"], out["champion"] = result["passed"], result["champion"]
    return result


def _made(cfg: PipelineConfig, out: dict[str, Any], stage: str) -> str:
    """The exact version `stage` made in this run, or (when the run started after it) its newest version."""
    key = REGISTERED[stage]  # out holds each made model under the name it is registered by
    if key not in out:
        out[key] = tracking.pin_uri(f"models:/{cfg.tracking.model_prefix}-{key}/latest")
    return out[key]


if __name__ == "__main__":
    print(pipeline(*sys.argv[1:2]))
