"""PPO: align the SFT policy against the reward model with a per-token KL penalty to the frozen SFT reference
(InstructGPT); registers <prefix>-policy with the SFT and reward versions in its lineage.

    result = run(load_config("tiny"))      # or: alignops ppo --preset tiny
    alignops ppo --preset tiny --set ppo.method=grpo --set ppo.group_size=4          # critic-free, same stage
    alignops ppo --preset tiny --set ppo.reward_function=alignops.stages.reward_function:vader_sentiment

ppo.method picks PPO (critic, GAE) or GRPO / RLOO (group-relative advantages, no critic): the same health checks,
resume and registry. ppo.reward_function (module:function) replaces the reward model by a rule or verifier.
ppo.stop_at_kl is a KL budget: the run stops once its training KL reaches it (ppo/iterations says after how many).

Refuses a reward model that failed its quality gate. Rollouts sample the rollout_prompts set's train split
(continuations of the first words of real texts, split by content hash from every other set's train split);
ppo/reward_gain is measured on its test split, against the SFT policy with the same seed.

Several devices (--set trainer.devices=2 --set trainer.strategy=ddp): Lightning DDP, each rank rolling out its own
share of each iteration's prompts (ppo.rollout_batch_size per device); gradients are averaged, and reward scale,
whitening, logged figures, health checks and the KL controller use every rank's batch together
(models.ppo.module): N ranks train as one process at N times the batch. Under FSDP (--set trainer.strategy=fsdp:
FSDP2, training.sharded_strategy) the policy, the reference and the reward model are sharded block by block over
the ranks (models.sharding), gathered whole for decoding; rank 0 gathers the trained policy, evaluates and
publishes it.

A health check after every rollout and update (NaN/inf, KL or approx-KL beyond bounds, collapsed responses) stops
the run; the policy is then rolled back to the last healthy checkpoint (or the SFT model), registered as such, and
the reasons are logged. A killed run resumes like every stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignops import tracking
from alignops.artifacts import load_model
from alignops.config import ConfigError, PipelineConfig, TrainConfig
from alignops.data import datasets
from alignops.errors import ModelError
from alignops.precision import resolve_precision
from alignops.stages import training
from alignops.stages.data import require_valid

SHARDED_PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-true")  # what ModelParallelStrategy runs


class RewardModelRejected(ModelError):
    """The reward model failed its quality gate; PPO against it would optimise noise or length."""


@dataclass(frozen=True)
class PPOResult(training.TrainResult):
    stopped: list[str] | None = None  # health reasons when the run was stopped and rolled back


def _gate(reward_uri: str, reward_meta) -> None:
    reasons = reward_meta.extra.get("gate") or []
    if reasons:
        raise RewardModelRejected(
            f"{reward_uri} failed its quality gate ({tracking.REWARD_GATE_TAG}): "
            + "; ".join(reasons)
            + ". Train a better reward model (more steps or data), or lower reward.min_accuracy / turn off "
            "reward.bias_checks knowingly."
        )


def _with_unused_parameters(cfg: PipelineConfig) -> PipelineConfig:
    """Under DDP, some trainable parameters get no gradient in some backward passes: the value head under GRPO and
    RLOO, the policy during critic warm-up. DDP must then look for them (a little work per backward)."""
    if cfg.trainer.strategy != "ddp":
        return cfg
    trainer = cfg.trainer.model_copy(update={"strategy": "ddp_find_unused_parameters_true"})
    return cfg.model_copy(update={"trainer": trainer})


def _sampled_scores(scorer, gpt, tokenizer, prompts: list[str], cfg: PipelineConfig) -> dict[str, float]:
    """Mean score, mean length (tokens, EOS included) and empty replies of sampled completions (the same seed for
    every policy compared). Scored as training scores: the sampled token ids themselves, prompt then response, no
    EOS appended to a response that did not end (decoding and re-encoding would change both)."""
    import torch

    from alignops.data.loaders import collate_right_pad, pad_id
    from alignops.evaluation.scoring import generate_responses
    from alignops.precision import inference_autocast

    device = next(gpt.parameters()).device
    with inference_autocast(cfg.trainer.precision, device, gpt):  # the precision the rollouts were trained in
        out = generate_responses(
            gpt, tokenizer, prompts, cfg.ppo.max_new_tokens, batch_size=16, sample=True, seed=cfg.seed,
            fixed_length=cfg.ppo.fixed_length, temperature=cfg.ppo.temperature,
        )  # fmt: skip
        block = gpt.max_positions
        rows = [
            {"input_ids": torch.tensor((p + r)[-block:])} for p, r in zip(out.prompt_ids, out.response_ids, strict=True)
        ]
        batch = collate_right_pad(pad_id(tokenizer))(rows)
        with torch.no_grad():
            score = scorer.score if hasattr(scorer, "score") else scorer  # a RewardModel, or a TextScorer
            mean = float(score(batch["input_ids"], batch["attention_mask"]).mean())
    lengths = [len(r) for r in out.response_ids]
    return {
        "reward": mean,
        "response_len": sum(lengths) / len(lengths),
        "empty": float(sum(not t.strip() for t in out.texts)),
    }


def _reward_scorer(reward_loaded):
    """The frozen RewardModel (eval mode) of a loaded reward-model folder (a copy of its weights)."""
    from models.reward import RewardModel

    scorer = RewardModel.from_base(reward_loaded.gpt)
    scorer.head.load_state_dict(reward_loaded.head.state_dict())
    return scorer.eval()


def _last_healthy_policy(start, lora: dict | None, dtype):
    """A stopped run's policy: the last checkpoint's weights (the last healthy iteration's), else the SFT policy.

    Built anew from the SFT folder, LoRA merged: a checkpoint holds the trained parameters only (a LoRA policy's
    frozen base is the SFT model's), and the module's own policy may be sharded. In the trained policy's dtype
    (bf16 under bf16-true), as export() gives it."""
    import torch

    from models.lm import merged_with

    policy = load_model(start.folder).gpt
    last = start.stage_dir.checkpoints / "last.ckpt"
    if not last.is_file():
        return policy.to(dtype)
    state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    trained = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    return merged_with(policy, lora, trained, dtype)


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> PPOResult:
    sharded = cfg.trainer.strategy == "fsdp"  # FSDP2: policy, reference and reward model sharded block by block
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    if sharded and precision not in SHARDED_PRECISIONS:  # refused before anything runs, not by the Trainer later
        raise ConfigError(
            f"trainer.precision {precision} does not run under FSDP (Lightning's ModelParallelStrategy): use one "
            f"of {', '.join(SHARDED_PRECISIONS)}, or trainer.strategy=ddp"
        )
    require_valid(cfg)

    from alignops.data.loaders import PromptDataset, collate_left_pad, resumable_loader
    from alignops.stages.reward_function import TextScorer, load_reward_function
    from models.ppo.health import HealthBounds
    from models.ppo.module import PPOModule, UnhealthyRun

    pc = cfg.ppo
    start = training.start_from_base(cfg, "ppo", pc, default="sft")
    sft = start.model
    tokenizer = sft.tokenizer
    if pc.reward_function:  # a rule or verifier in place of the reward model: no reward model, no gate
        reward_uri = pc.reward_function
        scorer = TextScorer(load_reward_function(pc.reward_function), tokenizer)
    else:
        reward_uri = tracking.pin_uri(pc.reward_model or f"models:/{cfg.tracking.model_prefix}-reward/latest")
        reward_loaded = load_model(tracking.resolve_model(reward_uri))
        _gate(reward_uri, reward_loaded.meta)
        if reward_loaded.meta.tokenizer_sha256 != sft.meta.tokenizer_sha256:
            raise ValueError(f"{reward_uri} and {start.uri} use different tokenizers: train both from one tokenizer.")
        scorer = _reward_scorer(reward_loaded)
        del reward_loaded  # the scorer holds a copy: not two reward models for the whole run

    ppo_config = pc.algorithm()  # the stage config is PPOConfig plus models, iterations and health bounds
    health = HealthBounds(
        max_kl=pc.max_kl, max_approx_kl=pc.max_approx_kl, min_response_length=pc.min_response_length,
        min_length_fraction=pc.min_length_fraction,
    )  # fmt: skip
    eos, pad = start.chat.eos_id, start.chat.pad_id  # the base's own
    lora = None if pc.lora is None else pc.lora.model_dump()
    module = PPOModule.from_base(
        sft.gpt, reward=scorer, config=ppo_config, eos_id=eos, pad_id=pad, health=health, lora=lora
    )  # its reference: a frozen copy of the SFT policy

    train_records = training.of_sources(datasets.load_split(cfg.data.data_dir, "rollout_prompts", "train"), pc.sources)
    train_prompts = sorted({r["prompt"] for r in train_records})
    room = sft.gpt.max_positions - pc.max_new_tokens
    loader = resumable_loader(
        PromptDataset(train_prompts * max(1, pc.rollout_batch_size // len(train_prompts) + 1), start.chat, room),
        pc.rollout_batch_size, seed=cfg.seed, collate_fn=collate_left_pad(pad), drop_last=True,
    )  # fmt: skip
    steps = ppo_config.steps_per_iteration
    # Trainer steps are optimizer steps; PPO clips its own gradients (manual optimization) and is judged on held-out
    # prompts after training instead of a validation loop.
    train_cfg = TrainConfig(
        max_steps=pc.iterations * steps, checkpoint_every_n_steps=pc.checkpoint_every_n_iterations * steps,
        val_every_n_steps=pc.iterations * steps, grad_clip=0.0, warmup_steps=0,
    )  # fmt: skip

    with tracking.stage_run("ppo", cfg, pc, parent_run_id, start.resume_run_id) as stage:
        start.started(stage.run_id)
        if start.resume_run_id is None:
            stage.set_tags({tracking.PARENT_MODEL_TAG: start.uri, tracking.REWARD_MODEL_TAG: reward_uri})
            stage.log_metrics({"data/rollout_prompts": len(train_prompts)} | training.parameter_counts(module.model))
        # one logged row per iteration (an iteration is one training batch of prompts)
        trainer = training.build_trainer(
            _with_unused_parameters(cfg), train_cfg, start.stage_dir, tracking.lightning_logger(stage.run_id), 1,
            strategy=training.sharded_strategy() if sharded else None,
        )  # fmt: skip
        stopped, policy = None, None
        try:
            trainer.fit(module, loader, ckpt_path=start.checkpoint)
        except UnhealthyRun as exc:  # every rank raises it (the checks read every rank's figures together)
            stopped = exc.reasons
            stage.set_tags({tracking.PPO_STOPPED_TAG: f"iteration {exc.iteration}: " + "; ".join(exc.reasons)})
            stage.log_text(str(exc), "health/stopped.txt")
            if trainer.is_global_zero or not sharded:  # sharded: rank 0 alone evaluates and publishes
                policy = _last_healthy_policy(start, lora, next(module.model.parameters()).dtype)

        if stopped is None:
            policy = module.policy_model()  # sharded: gathered onto rank 0 (every rank calls it), None elsewhere
        if sharded and not trainer.is_global_zero:
            # the other ranks of a sharded run: their models are shards, and rank 0 evaluates and publishes alone
            return PPOResult(stage.run_id, None, None, {}, None, stopped)
        policy = policy.cpu().eval()
        if sharded and not pc.reward_function:  # the module's reward model is sharded: score with a whole one
            scorer = _reward_scorer(load_model(tracking.resolve_model(reward_uri)))
        # held out: the rollout set's test split, taken evenly across the file (English and Chinese mixed)
        test_records = training.of_sources(
            datasets.load_split(cfg.data.data_dir, "rollout_prompts", "test"), pc.sources
        )
        test_prompts = list(dict.fromkeys(r["prompt"] for r in training.spread(test_records, pc.eval_samples)))
        eval_prompts = (test_prompts * (pc.eval_samples // max(len(test_prompts), 1) + 1))[: pc.eval_samples]
        reference = load_model(start.folder).gpt
        after = _sampled_scores(scorer, policy, tokenizer, eval_prompts, cfg)
        before = _sampled_scores(scorer, reference, tokenizer, eval_prompts, cfg)
        metrics = {"ppo/eval_reward": after["reward"], "ppo/eval_reward_sft": before["reward"]}
        # the iterations run: fewer than ppo.iterations when the KL budget (ppo.stop_at_kl) ended the run, or a
        # health stop (whose registered policy is then an earlier checkpoint's, see the health tag)
        metrics["ppo/iterations"] = float(trainer.global_step // steps)
        metrics["ppo/reward_gain"] = after["reward"] - before["reward"]
        for name in ("response_len", "empty"):  # did the policy learn to stop early? (SFT beside it)
            metrics[f"ppo/eval_{name}"], metrics[f"ppo/eval_{name}_sft"] = after[name], before[name]
        stage.log_metrics(metrics)

        tags = {
            tracking.METHOD_TAG: pc.method,
            tracking.REWARD_MODEL_TAG: reward_uri,
            tracking.HEALTH_TAG: "stopped: " + "; ".join(stopped) if stopped else "healthy",
        }
        uri, version, model_dir = training.publish(
            start,
            policy,
            registered="policy",
            kind="causal_lm",
            extra={"reward_model": reward_uri, "stopped": stopped},
            tags=tags,
        )
        return PPOResult(stage.run_id, uri, version, metrics, model_dir, stopped)  # model_dir None off rank 0
