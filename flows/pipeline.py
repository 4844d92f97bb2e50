"""The whole recipe as one Prefect flow, under one MLflow parent run with a nested run per stage:

    data -> tokenizer -> pretrain -> fewshot -> ner -> sft -> reward -> ppo -> evaluate -> promote
    data -> base (fetched or imported: steps.base) -> fewshot -> ner -> sft -> ...     steps.fewshot/ner: off

    alignops run --preset tiny [--from sft] [--to evaluate]     # or: python -m flows.pipeline tiny

STEPS below is the table of contents: each step is a task (flows/tasks.py) handed the exact versions made upstream,
read from a typed state (`Made`) and written back into it, so a cached step (same inputs) is skipped and a changed
one re-runs itself and everything downstream of it. Steps before --from are not run: their newest registered
versions are used. ppo.method picks the RL method (PPO, GRPO, RLOO) of the ppo step. A failure names its step;
since only the last step moves aliases, a failed run leaves the registry's `champion` untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from alignops import tracking
from alignops.config import ConfigError, PipelineConfig, load_config
from alignops.tracking_server import require_reachable
from flows import tasks
from flows.tasks import Outputs, with_section


@dataclass(frozen=True)
class Made:
    """What the pipeline has made so far (model URIs, run ids); each step reads its inputs here and adds its own."""

    parent_run_id: str
    data_version: str | None = None
    tokenizer: str | None = None
    base: str | None = None
    fewshot_run_id: str | None = None
    ner: str | None = None
    sft: str | None = None
    reward: str | None = None
    policy: str | None = None
    evaluation_run_id: str | None = None
    samples: str | None = None  # the evaluation's samples.jsonl (prompts and answers queued for labeling)
    promoted: bool | None = None
    champion: str | None = None
    ran: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()

    def as_result(self) -> dict[str, Any]:
        """The flow's result: what was made (nothing for what was not), which steps ran and which were reused."""
        made = {k: v for k, v in asdict(self).items() if v is not None}
        if self.promoted is not None:
            made["champion"] = self.champion  # None when there is none yet
        return made | {"ran": list(self.ran), "cached": list(self.cached)}


# ------------------------------------------------------------------------------------------- the steps
# Each step: (cfg, what was made) -> (what is made now, the task's outputs). Only wiring: the work is in the tasks.


def build_data(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    built = tasks.build_data(cfg, made.parent_run_id)
    tasks.validate_data(cfg, made.parent_run_id)  # cached on its own: a rebuilt data version is validated again
    return replace(made, data_version=built["data_version"]), built


def train_tokenizer(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.train_tokenizer(cfg, made.parent_run_id)
    return replace(made, tokenizer=out["tokenizer"]), out


def pretrain(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.pretrain_model(cfg, made.parent_run_id)
    return replace(made, base=out["model_uri"]), out


def bring_base(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.bring_base(cfg)
    return replace(made, base=out["model_uri"]), out


def evaluate_fewshot(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.evaluate_fewshot(with_section(cfg, "fewshot", model=made.base), made.parent_run_id)
    return replace(made, fewshot_run_id=out["run_id"]), out


def train_ner(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.train_ner(with_section(cfg, "ner", base_model=made.base), made.parent_run_id)
    return replace(made, ner=out["model_uri"]), out


def finetune(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.finetune(with_section(cfg, "sft", base_model=made.base), made.parent_run_id)
    return replace(made, sft=out["model_uri"]), out


def train_reward(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.train_reward(with_section(cfg, "reward", base_model=made.sft), made.parent_run_id)
    return replace(made, reward=out["model_uri"]), out


def align(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    ppo_cfg = with_section(cfg, "ppo", base_model=made.sft, reward_model=made.reward)
    out = tasks.align(ppo_cfg, made.parent_run_id)  # ppo.method: PPO, GRPO or RLOO
    return replace(made, policy=out["model_uri"]), out


def evaluate(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    eval_cfg = with_section(cfg, "evaluate", model=made.policy, reward_model=made.reward)
    out = tasks.evaluate_model(eval_cfg, made.parent_run_id)
    return replace(made, evaluation_run_id=out["run_id"], samples=out.get("samples")), out


def label_answers(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.queue_label_answers(cfg, made.samples)
    return made, out


def promote(cfg: PipelineConfig, made: Made) -> tuple[Made, Outputs]:
    out = tasks.promote_model(cfg, made.policy, made.parent_run_id)
    return replace(made, promoted=out["passed"], champion=out["champion"]), out


def own_base(cfg: PipelineConfig) -> bool:
    return cfg.steps.base == "pretrain"


def always(cfg: PipelineConfig) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One line of the table of contents."""

    name: str  # what --from / --to take
    run: Callable[[PipelineConfig, Made], tuple[Made, Outputs]]
    needs: tuple[str, ...] = ()  # fields of Made it reads; when made before --from, the newest registered versions
    when: Callable[[PipelineConfig], bool] = always  # whether this config's recipe has the step


STEPS = (
    Step("data", build_data),
    Step("tokenizer", train_tokenizer, when=own_base),
    Step("pretrain", pretrain, when=own_base),
    Step("base", bring_base, when=lambda cfg: not own_base(cfg)),
    Step("fewshot", evaluate_fewshot, needs=("base",), when=lambda cfg: cfg.steps.fewshot),
    Step("ner", train_ner, needs=("base",), when=lambda cfg: cfg.steps.ner),
    Step("sft", finetune, needs=("base",)),
    Step("reward", train_reward, needs=("sft",)),
    Step("ppo", align, needs=("sft", "reward")),
    Step("evaluate", evaluate, needs=("policy", "reward")),
    Step("label", label_answers, when=lambda cfg: cfg.steps.label_model is not None),
    Step("promote", promote, needs=("policy",)),
)
STAGES = tuple(step.name for step in STEPS)


# ------------------------------------------------------------------------------------------- the flow


@flow(name="alignops-pipeline")
def pipeline(
    preset: str = "tiny", overrides: list[str] | None = None, start: str = "data", to: str = "promote"
) -> dict[str, Any]:
    """Run the steps from `start` to `to` (both included; names in STAGES) that the config's recipe has. Returns
    what each step made, and which steps ran and which were reused from the cache."""
    stage_range(start, to)
    cfg = load_config(preset, overrides or [])
    chosen = steps_between(cfg, start, to)
    require_reachable()  # before the parent run and the data checks: a missing server is named in seconds
    with tracking.pipeline_run(cfg) as parent:
        made = walk(cfg, Made(parent_run_id=parent), chosen)
        tracking.set_run_tags(
            parent, {tracking.RAN_TAG: ",".join(made.ran), tracking.CACHED_TAG: ",".join(made.cached)}
        )
    return made.as_result()


def walk(cfg: PipelineConfig, made: Made, steps: list[Step]) -> Made:
    """Run `steps` in order, each on what the ones before it made; a failure is tagged on the parent run with its
    step and re-raised with a note (the exception keeps its type: the CLI maps it to a message)."""
    for step in steps:
        try:
            made = upstream(cfg, made, step.needs)
            made, out = step.run(cfg, made)
        except BaseException as exc:
            tracking.set_run_tags(made.parent_run_id, {tracking.FAILED_STAGE_TAG: step.name})
            exc.add_note(f"The pipeline stopped at stage '{step.name}'; aliases were not changed.")
            get_run_logger().error("stage %s failed: %s", step.name, exc)
            raise
        outcome = {"cached": made.cached + (step.name,)} if out.get("cached") else {"ran": made.ran + (step.name,)}
        made = replace(made, **outcome)
    return made


def upstream(cfg: PipelineConfig, made: Made, needs: tuple[str, ...]) -> Made:
    """`made` with each of `needs` that this run has not made (it started after it) set to the newest registered
    version of that model."""
    missing = {name: f"models:/{registered_name(cfg, name)}/latest" for name in needs if getattr(made, name) is None}
    return replace(made, **{name: tracking.pin_uri(uri) for name, uri in missing.items()})


def registered_name(cfg: PipelineConfig, made_field: str) -> str:
    """The registered model a field of Made is a version of: <prefix>-base, -sft, ...; a fetched or imported
    base is registered under its own name."""
    if made_field == "base" and not own_base(cfg):
        from alignops import base_models

        source = cfg.steps.base_source or ""
        return base_models.registered_name(
            source if cfg.steps.base == "fetch" else base_models.imported_name(Path(source))
        )
    return f"{cfg.tracking.model_prefix}-{made_field}"


def steps_between(cfg: PipelineConfig, start: str, to: str) -> list[Step]:
    """The steps of this config's recipe from --from to --to; ConfigError when either is not in the recipe."""
    recipe = [step for step in STEPS if step.when(cfg)]
    names = [step.name for step in recipe]
    for name in (start, to):
        if name not in names:
            raise ConfigError(
                f"Stage {name!r} is not in this config's recipe ({' -> '.join(names)}): steps.base={cfg.steps.base}, "
                f"steps.fewshot={cfg.steps.fewshot}, steps.ner={cfg.steps.ner}. Choose one of those stages, or "
                "change the steps section (--set steps.KEY=VALUE)."
            )
    return recipe[names.index(start) : names.index(to) + 1]


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


if __name__ == "__main__":
    print(pipeline(*sys.argv[1:2]))
