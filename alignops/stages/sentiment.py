"""The sentiment-continuation experiment (Ziegler et al. 2019), the recipe's proof: RL moves a model the way its
reward says, and only that way. flows/experiment.py chains it:

    alignops experiment sentiment --preset smollm2 [--quick]

    prompts = heldout_prefixes(cfg)                                # rollout_prompts/test, per VADER subset
    for arm in arms(cfg.experiment, quick): policy = ppo.run(arm_config(cfg, arm, sft, reward))
    row = measure(cfg, arm, policy, sft, reward, prompts, models)  # against the SFT policy, same seeds
    report(cfg, rows, parent_run_id)                               # table, figure, targets -> MLflow

Arms: the main RL method on each seed; a second method on the first seed (compared by wall time to the targets); two
controls on the first seed: the reward negated (the policy should turn negative) and the rewards shuffled within each
rollout batch (no signal: it should not move), each matched to the main arm of its seed under a KL budget
(matched_to_main). Every arm's policy continues the same held-out prefixes as the SFT
policy, sampled with the same seeds, and is read by VADER, by AFINN (a second lexicon, independent of the reward
model's training data), by the reward model, by the exact KL to the SFT policy and by the SFT policy's perplexity
of its continuations. The arms' models are registered under <prefix>-sentiment-*, away from the pipeline's own.

The reward model learns from the VADER raters' rankings of human-written sentences, or, with
experiment.simulated_labels, from a simulated labeler's rankings of the SFT policy's own continuations
(stages.simulated_labels). Every continuation, in training and in the measurement, is experiment.max_new_tokens
long and sampled at experiment.temperature, and every model pass runs at trainer.precision (bf16 autocast where
the hardware has it, as the arms train; alignops.precision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from alignops import settings, tracking
from alignops.config import ConfigError, ExperimentConfig, PipelineConfig
from alignops.data import datasets
from alignops.errors import ModelError
from alignops.evaluation import judges
from alignops.evaluation.continuations import (
    PRIMARY_JUDGE,
    Samples,
    arm_metrics,
    missed_targets,
    results_table,
    reward_judge_agreement,
    side_by_side,
    time_to_target,
)
from alignops.evaluation.metrics import WinRate
from alignops.precision import autocast, inference_autocast, inference_precision
from alignops.stages import training
from models.ppo.config import GROUP_METHODS

MAIN, SECOND, NEGATED, SHUFFLED = "main", "second", "negated", "shuffled"
CONTROLS = {NEGATED: "negate", SHUFFLED: "shuffle"}  # arm kind -> ppo.reward_control
JUDGES = {"vader": judges.english, "afinn": judges.afinn}  # the English judges, higher = more positive
PREFIX_SUFFIX = "-sentiment"  # tracking.model_prefix of the arms' models: <prefix>-sentiment-reward, -policy


@dataclass(frozen=True)
class Arm:
    name: str  # "ppo seed 0", "grpo seed 0", "negated", "shuffled"
    kind: str  # MAIN, SECOND, NEGATED or SHUFFLED (continuations.TARGETS are per kind)
    method: str
    seed: int
    control: str = "none"  # ppo.reward_control


def arms(ec: ExperimentConfig, quick: bool) -> list[Arm]:
    """The experiment's arms in run order; quick: the main method on the first seed alone (the controls and the
    second method take as long each: the full run has them)."""
    first = ec.seeds[0]
    if quick:
        return [Arm(f"{ec.method} seed {first}", MAIN, ec.method, first)]
    out = [Arm(f"{ec.method} seed {s}", MAIN, ec.method, s) for s in ec.seeds]
    if ec.second_method:
        out.append(Arm(f"{ec.second_method} seed {first}", SECOND, ec.second_method, first))
    if ec.controls:
        out += [Arm(kind, kind, ec.method, first, control) for kind, control in CONTROLS.items()]
    return out


def quick_config(cfg: PipelineConfig) -> PipelineConfig:
    """cfg as --quick runs it: experiment.quick's fields over the experiment section (a dict field such as reward
    merged into the full run's); a misspelt field is an error."""
    ec = cfg.experiment
    fields = ec.model_dump()
    for key, value in ec.quick.items():
        merge = isinstance(fields.get(key), dict) and isinstance(value, dict)
        fields[key] = fields[key] | value if merge else value
    fields["quick"] = {}
    return cfg.model_copy(update={"experiment": _section(ec, fields, "experiment", given="experiment.quick")})


def experiment_config(cfg: PipelineConfig) -> PipelineConfig:
    """cfg with the arms' models registered under <prefix>-sentiment-*: the experiment never moves the pipeline's
    `latest` policy or reward model."""
    prefix = cfg.tracking.model_prefix.removesuffix(PREFIX_SUFFIX) + PREFIX_SUFFIX
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"model_prefix": prefix})})


def reward_sources(ec: ExperimentConfig) -> list[str]:
    """The rankings the reward model learns from: the simulated labeler's of the SFT policy's continuations when
    experiment.simulated_labels asks for them, else the experiment's sources' (the VADER raters')."""
    from alignops.stages.simulated_labels import SOURCE

    return [SOURCE] if ec.simulated_labels else list(ec.sources)


def reward_config(cfg: PipelineConfig, sft_uri: str) -> PipelineConfig:
    """The reward stage's config: the reward section with experiment.reward's fields over it, from the SFT policy,
    on reward_sources (validated: a misspelt field is an error, not ignored)."""
    fields = cfg.reward.model_dump() | cfg.experiment.reward
    fields |= {"base_model": sft_uri, "sources": reward_sources(cfg.experiment)}
    return experiment_config(cfg).model_copy(update={"reward": _section(cfg.reward, fields, "reward")})


def _section(section, fields: dict[str, Any], name: str, given: str = ""):
    """`fields` validated as a section of `section`'s type: a misspelt field of `given` (default experiment.<name>)
    is an error."""
    try:
        return type(section).model_validate(fields)
    except ValueError as e:
        raise ConfigError(f"{given or f'experiment.{name}'} does not make a valid {name} section: {e}") from e


def reused_reward(cfg: PipelineConfig, sft_uri: str) -> str | None:
    """experiment.reward_model pinned, once checked to be one the experiment would have trained: from the same SFT
    policy, on the experiment's sources, through its gate. None when the experiment trains its own."""
    ec = cfg.experiment
    if ec.reward_model is None:
        return None
    uri = tracking.pin_uri(ec.reward_model)
    tags = tracking.model_version_tags(uri)
    problems = []
    if tags.get(tracking.PARENT_MODEL_TAG) != sft_uri:
        problems.append(f"it was trained from {tags.get(tracking.PARENT_MODEL_TAG)}, not from {sft_uri}")
    run_id = tags.get(tracking.RUN_ID_TAG)
    sources = tracking.run_config(run_id).get("reward", {}).get("sources") if run_id else None
    if sorted(sources or []) != sorted(reward_sources(ec)):
        problems.append(f"it learnt from the sources {sources}, not the experiment's {reward_sources(ec)}")
    if tags.get(tracking.REWARD_GATE_TAG) != "passed":
        problems.append(f"its gate says {tags.get(tracking.REWARD_GATE_TAG)!r}, not 'passed'")
    if problems:
        raise ConfigError(
            f"experiment.reward_model {uri} cannot judge this experiment: " + "; ".join(problems)
            + ". Set experiment.reward_model=null to train one."
        )  # fmt: skip
    return uri


ARM_FIELDS = ("method", "reward_control", "max_new_tokens", "fixed_length", "temperature")  # set per arm


def arm_config(
    cfg: PipelineConfig, arm: Arm, sft_uri: str, reward_uri: str, done: dict[tuple[str, int], dict] | None = None
) -> PipelineConfig:
    """The PPO stage's config of one arm: the ppo section with experiment.ppo's fields over it (and, for the second
    method's arm, experiment.second_ppo's over those; validated: a misspelt field is an error), its method, control
    and seed, on the experiment's prefixes; a control's fields matched to the main arm of its seed (matched_to_main;
    done: (kind, seed) -> "iterations" trained and held-out "kl" measured, of the arms run so far)."""
    ec = cfg.experiment
    own = {"ppo": ec.ppo} | ({"second_ppo": ec.second_ppo} if arm.kind == SECOND else {})
    for name, section in own.items():
        if clash := sorted(set(section) & set(ARM_FIELDS)):
            raise ConfigError(
                f"experiment.{name} sets {clash}: the experiment sets those itself (experiment.method, "
                "second_method, controls, max_new_tokens, fixed_length, temperature); set them there instead"
            )
    fields = cfg.ppo.model_dump()
    for section in own.values():
        fields |= section
    fields |= {
        "base_model": sft_uri, "reward_model": reward_uri, "method": arm.method, "reward_control": arm.control,
        "sources": ec.sources, "max_new_tokens": ec.max_new_tokens, "fixed_length": ec.fixed_length,
        "temperature": ec.temperature,
        "iterations": ec.iterations or fields["iterations"],
    }  # fmt: skip
    fields |= matched_to_main(arm, done or {}, fields["stop_at_kl"])
    # Every arm samples the same episodes per iteration, so the methods are compared on one sampling budget: a
    # group method takes rollout_batch_size / group_size prompts, each sampled group_size times.
    prompts = ec.rollout_batch_size or fields["rollout_batch_size"]
    group = fields["group_size"] if arm.method in GROUP_METHODS else 1
    fields["rollout_batch_size"] = max(1, prompts // group)
    ppo = _section(cfg.ppo, fields, "ppo", "/".join(f"experiment.{name}" for name in own))
    return experiment_config(cfg).model_copy(update={"ppo": ppo, "seed": arm.seed})


def matched_to_main(arm: Arm, done: dict[tuple[str, int], dict], budget: float | None) -> dict[str, Any]:
    """A control's ppo fields matched to the main arm of its seed (done: as arm_config's; budget: the arms'
    ppo.stop_at_kl). Under a KL budget:
    - the shuffled control trains as many iterations as its main arm: it has no signal to spend a budget with and
      might never reach one;
    - the negated control stops at the KL its main arm measured on the held-out prefixes rather than at the
      budget. The budget's trigger, a mean over the last kl_stop_window iterations, lags a KL that rises fast:
      main arms stopped at 4 nats measured 5.2-7.0 on the held-out prefixes, while the negated arm's KL rose slowly
      and levelled off at 4-5 under the KL penalty, so at the budget it measured 4.7, less than the arm it controls
      (2026-12-07). experiment.iterations caps it.
    {} for every other arm, without a budget (every arm trains experiment.iterations), or before the main arm of
    the seed has run."""
    main = done.get((MAIN, arm.seed))
    if budget is None or main is None:
        return {}
    return {SHUFFLED: {"iterations": int(main["iterations"])}, NEGATED: {"stop_at_kl": main["kl"]}}.get(arm.kind, {})


def iterations_trained(policy_uri: str) -> int:
    """How many iterations the PPO run that made a policy version trained (its ppo/iterations)."""
    return int(tracking.run_metrics(_run_of(policy_uri))["ppo/iterations"])


def _run_of(policy_uri: str) -> str:
    """The id of the PPO run that registered a policy version."""
    return tracking.model_version_tags(policy_uri)[tracking.RUN_ID_TAG]


def heldout_prefixes(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """prompts_per_source records of each experiment source from the rollout set's test split (never trained on),
    taken evenly across the file: prompt, prefix, source, lang."""
    test = datasets.load_split(cfg.data.data_dir, "rollout_prompts", "test")
    ec = cfg.experiment
    by_source: dict[str, list[dict]] = {}
    for record in training.of_sources(test, ec.sources):
        by_source.setdefault(record["source"], []).append(record)
    return [r for source in sorted(by_source) for r in training.spread(by_source[source], ec.prompts_per_source)]


def sample(model, prompts: list[str], seed: int, reference, reward, ec: ExperimentConfig) -> tuple[Samples, Any]:
    """`model`'s sampled continuations of `prompts` (seeded per batch: two models draw the same streams), scored by
    the reward model and by the reference's likelihood (reference None: not scored, reference_nll empty); with the
    raw responses (scoring.Responses, for the KL)."""
    from alignops.evaluation.scoring import generate_responses, response_nll, reward_scores

    out = generate_responses(
        model.gpt, model.tokenizer, prompts, ec.max_new_tokens, ec.batch_size, True, seed,
        fixed_length=ec.fixed_length, temperature=ec.temperature,
    )  # fmt: skip
    pad = _pad(model)
    return Samples(
        texts=out.texts,
        lengths=out.lengths,
        reward=reward_scores(reward, out, ec.batch_size),
        reference_nll=[] if reference is None else response_nll(reference.gpt, out, pad, ec.batch_size),
    ), out


AGREEMENT_SEED = 1_000_003  # the SFT policy's second draw for reward_agreement: a stream no arm's seed uses


def reward_agreement(
    cfg: PipelineConfig,
    sft_uri: str,
    reward_uri: str,
    prompts: list[str],
    models,
    sft_samples: dict[tuple[int, str, str], Samples],
) -> WinRate:
    """The reward model against the primary judge on pairs of the SFT policy's continuations of the held-out
    prefixes (continuations.reward_judge_agreement): the first seed's samples (kept in sft_samples, the arms compare
    with them) and a second, independent draw. A few minutes that tell whether the hours of RL can work."""
    ec = cfg.experiment
    with inference_autocast(cfg.trainer.precision, models.device, models.get(sft_uri).gpt, models.get(reward_uri).gpt):
        mine = _sft_samples(cfg, ec.seeds[0], sft_uri, reward_uri, prompts, models, sft_samples)
        # a second, independent draw, read for its rewards and texts alone (no reference likelihood)
        other = sample(models.get(sft_uri), prompts, AGREEMENT_SEED, None, models.get(reward_uri), ec)[0]
    return reward_judge_agreement(mine, other, JUDGES[PRIMARY_JUDGE])


def _sft_samples(
    cfg: PipelineConfig, seed: int, sft_uri: str, reward_uri: str, prompts: list[str], models, cache: dict
) -> Samples:
    """The SFT policy's samples with `seed`, drawn once per cache. Keyed by seed, SFT and reward model: they carry the
    reward model's scores, so a cache kept across reward models (a script comparing two) must not hand one model's
    scores to the other."""
    key = seed, sft_uri, reward_uri
    if key not in cache:
        sft = models.get(sft_uri)
        cache[key] = sample(sft, prompts, seed, sft, models.get(reward_uri), cfg.experiment)[0]
    return cache[key]


def require_agreement(cfg: PipelineConfig, agreement: WinRate, reward_uri: str) -> None:
    """Refuse to run the arms when the reward model cannot order the SFT policy's continuations as the judge does:
    its agreement's 95% lower bound at or below experiment.min_reward_agreement."""
    floor = cfg.experiment.min_reward_agreement
    if floor and agreement.low <= floor:
        raise ModelError(
            f"the reward model {reward_uri} orders pairs of the SFT policy's continuations as the judge "
            f"({PRIMARY_JUDGE}) does {_agreement_text(agreement)}: its 95% lower bound is not above "
            f"experiment.min_reward_agreement={floor}, so RL against it could not move the judge. Train it on "
            "rankings of the policy's own continuations (labelers rank what the policy writes; "
            "experiment.simulated_labels=N has a simulated labeler rank N prefixes' worth), or pass "
            "--set experiment.min_reward_agreement=0 to run the arms anyway."
        )


def _agreement_text(agreement: WinRate) -> str:
    rate = "-" if agreement.rate is None else f"{agreement.rate:.2f}"
    n = agreement.wins + agreement.losses
    return f"{rate} of the time [{agreement.low:.2f}, {agreement.high:.2f}] over {n} decisive pairs"


def _pad(model) -> int:
    from alignops.chat import chat_tokenizer

    return chat_tokenizer(model.tokenizer).pad_id


def measure(
    cfg: PipelineConfig,
    arm: Arm,
    policy_uri: str,
    sft_uri: str,
    reward_uri: str,
    prompts: list[str],
    models,
    sft_samples: dict[tuple[int, str, str], Samples],
) -> dict[str, Any]:
    """One arm's row: its metrics against the SFT policy on the held-out prefixes (continuations.arm_metrics), the
    SFT samples drawn with the same seed, and under "continuations" both continuations of every prefix with their
    scores (continuations.side_by_side; report() logs them apart from the table). models: an
    evaluation.models.ModelCache shared by the arms; sft_samples: the SFT policy's samples by (seed, SFT, reward
    model), shared by the arms too (every arm of one seed compares with the same ones)."""
    from alignops.evaluation.scoring import sequence_kl

    ec = cfg.experiment
    policy, sft, reward = models.get(policy_uri), models.get(sft_uri), models.get(reward_uri)
    precision = inference_precision(cfg.trainer.precision, models.device, policy.gpt, sft.gpt, reward.gpt)
    with autocast(precision, models.device):  # the precision the arms trained in
        mine, responses = sample(policy, prompts, arm.seed, sft, reward, ec)
        theirs = _sft_samples(cfg, arm.seed, sft_uri, reward_uri, prompts, models, sft_samples)
        kl = sequence_kl(policy.gpt, sft.gpt, responses, _pad(policy), ec.batch_size)
    metrics = arm_metrics(mine, theirs, JUDGES, kl)
    row = {"name": arm.name, "arm": arm.kind, "method": arm.method, "seed": arm.seed, "policy": policy_uri}
    return row | {"precision": precision} | metrics | {"continuations": side_by_side(prompts, mine, theirs, JUDGES)}


@dataclass(frozen=True)
class ExperimentResult:
    rows: list[dict[str, Any]]
    missed: list[str]  # the targets not met ([] = all met)
    table: str  # Markdown
    run_id: str | None


def report(
    cfg: PipelineConfig,
    rows: list[dict[str, Any]],
    curves: dict[str, list[tuple[float, float]]],
    parent_run_id: str,
    agreement: WinRate,
) -> ExperimentResult:
    """The results table, the targets and a figure of reward against KL over training (curves: arm name ->
    (KL, reward) per iteration, from the arms' PPO runs), logged to the experiment's run. agreement: the reward
    model against the judge on the SFT policy's continuations (reward_agreement), printed above the table. Each
    row's "continuations" (measure) are logged as continuations/<arm>.jsonl, not in the table or the rows returned."""
    from alignops.evaluation import figures

    texts = {row["name"]: row.get("continuations", []) for row in rows}
    rows = [{k: v for k, v in row.items() if k != "continuations"} for row in rows]
    missed = missed_targets(rows)
    table = f"Reward model vs {PRIMARY_JUDGE} on pairs of SFT continuations: {_agreement_text(agreement)}.\n\n"
    table += results_table(rows)
    if reached := time_to_target(rows):
        table += "\nWall time to the main targets (each arm measured at the end of its run):\n"
        table += "".join(f"- {line}\n" for line in reached)
    with tracking.stage_run("experiment-sentiment", cfg, cfg.experiment, parent_run_id) as stage:
        out_dir = settings.home() / "experiments" / f"sentiment-{stage.run_id}"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.md").write_text(table, encoding="utf-8")
        (out_dir / "results.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        for path in (out_dir / "results.md", out_dir / "results.json"):
            stage.log_artifact(path, "results")
        stage.log_artifact(figures.reward_against_kl(curves, rows, out_dir / "reward_vs_kl.png"), "figures")
        for name, pairs in texts.items():  # what each arm writes beside SFT, prefix by prefix, with every score
            path = out_dir / "continuations" / f"{_slug(name)}.jsonl"
            path.parent.mkdir(exist_ok=True)
            path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
            stage.log_artifact(path, "continuations")
        for row in rows:
            numbers = {k: v for k, v in row.items() if isinstance(v, float | int) and k != "seed"}
            stage.log_metrics({f"{_slug(row['name'])}/{k}": float(v) for k, v in numbers.items()})
        stage.log_metrics(agreement.as_metrics("reward_judge_agreement"))
        stage.set_tags({
            tracking.EXPERIMENT_TARGETS_TAG: "met" if not missed else "missed: " + "; ".join(missed),
            tracking.PRECISION_TAG: ",".join(sorted({row["precision"] for row in rows})) or "none",
        })  # fmt: skip
        return ExperimentResult(rows, missed, table, stage.run_id)


def _slug(arm_name: str) -> str:
    """An arm's name as its metric prefix and file name: "ppo seed 0" -> "ppo_seed_0"."""
    return arm_name.replace(" ", "_")


def training_curve(policy_uri: str) -> list[tuple[float, float]]:
    """(KL, reward) per iteration of the PPO run that made a policy version: ppo/kl and ppo/reward, in step order."""
    run_id = _run_of(policy_uri)
    kl = [v for _, _, v in tracking.metric_history(run_id, "ppo/kl")]
    reward = [v for _, _, v in tracking.metric_history(run_id, "ppo/reward")]
    return list(zip(kl, reward, strict=False))
