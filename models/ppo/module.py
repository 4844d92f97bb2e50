"""PPOModule: the InstructGPT PPO loop as a LightningModule (manual optimization) that composes models.ppo's functions.

    config = PPOConfig(rollout_batch_size=64, minibatch_size=16, ppo_epochs=4, max_new_tokens=64)
    ppo = PPOModule.from_base(sft_model, reward=reward_model, config=config, eos_id=eos, pad_id=pad)
    # or PPOModule(policy=sft_model, reference=copy.deepcopy(sft_model), reward=..., config=..., eos_id=..., pad_id=...)
    # with LoRA, reference=None: the policy with its adapters off is the reference (from_base's choice), no copy
    loader = resumable_loader(prompts, batch_size=config.rollout_batch_size, drop_last=True, collate_fn=left_pad)
    Trainer(max_steps=iterations * config.steps_per_iteration, log_every_n_steps=1).fit(ppo, loader)
    ppo.policy_model().save("out/ppo")       # LoRA merged, when the hparam `lora` adapted the policy

Policy and reference are models.base.CausalLM: the project's GPT or any Hugging Face causal LM (HFCausalLM); the
value head is sized from the policy's hidden_size.

Batches: input_ids, attention_mask (B, P) prompts, LEFT-padded (generation appends after the last column),
B = rollout_batch_size. One batch is one PPO iteration (training_step):
  1. rollout (no gradient, policy in eval mode): sample responses with models.generation.generate (KV cache), the
     response mask up to and including the first EOS (fixed_length: EOS suppressed, in the sampling and in every
     log-prob: the policy is the model's distribution without EOS); one forward each of policy (log-probs and
     values) and reference (log-probs) over prompt + response; the reward model's score of prompt + response,
     right-aligned (real tokens first, padding after: the layout it was trained on), as a z-score of the SFT
     policy's samples (normalize_rewards: mean and std measured on the first rollout, models.ppo.reward_scale), plus
     missing_eos_penalty (in those standard deviations) where no EOS came;
  2. kl_penalized_rewards, gae, masked_whiten(advantages);
  3. ppo_epochs passes over shuffled minibatches: policy_loss + vf_coef * value_loss - ent_coef * entropy,
     manual_backward, gradient-norm clipping, optimizer step;
  4. the KL controller reads the rollout's mean KL; metrics are logged and checked by models.ppo.health.

Group-relative methods (method "grpo" or "rloo"): each prompt is sampled group_size times (B * G episodes); each
response's KL-penalised return (normalised score + penalty - beta * summed KL) gets one advantage from its group
(models.ppo.group), on all its tokens; no value head is read or trained, no GAE, no whitening. The clipped policy
loss, health checks, checkpoints and resume are PPO's.

Steps: Trainer.global_step counts OPTIMIZER steps, config.steps_per_iteration = ppo_epochs * rollout_batch_size /
minibatch_size of them per iteration: for N iterations pass max_steps=N * steps_per_iteration, and to
ModelCheckpoint(every_n_train_steps=k * steps_per_iteration). Loggers' step counts iterations (batches); on_step
logs obey Trainer(log_every_n_steps=...), default 50: pass 1 to log every iteration.

Metrics (on_step): ppo/reward (mean reward-model score, before penalty and clip), ppo/kl (mean over responses of
the summed per-token KL(policy || reference)), ppo/entropy, ppo/clipfrac, ppo/approx_kl, ppo/value_loss,
ppo/policy_loss (means over the iteration's minibatch updates), ppo/response_len (tokens, EOS included),
ppo/eos_rate, ppo/beta (the KL coefficient of this iteration's rewards), ppo/episodes_per_sec,
ppo/time_generation_s (rollout: sampling and scoring), ppo/time_update_s (the PPO epochs).

KL budget (stop_at_kl): the run stops (Trainer.should_stop) after the iteration at which the mean ppo/kl of the
last kl_stop_window iterations reaches the budget, so runs with different rewards, methods or seeds are compared at
one KL rather than after one number of iterations (a fixed KL coefficient lets the KL reached swing by whole nats
between seeds). The window averages out one iteration's noise (about 1 nat on the sentiment experiment).

Health: check_health runs twice per iteration, on the rollout's metrics before any update (a NaN reward never
reaches the weights) and on all of them after. Any reason raises UnhealthyRun(reasons, stats) out of
Trainer.fit. The failing iteration raises before on_train_batch_end, so every checkpoint ModelCheckpoint wrote is
of a healthy iteration: the stage catches UnhealthyRun and resumes (fit(ckpt_path=...)) from the last one.

Design choices:
- The value head starts at exactly zero (weight and bias): a random head's constant offset is, to GAE, a bias on
  each response's last token, where EOS sits (the tiny run learnt to stop early from it). It has its own learning
  rate (value_lr) and can be trained alone for critic_warmup_iterations first (on detached hidden states: the
  policy does not move), so the first policy updates see advantages from a fitted critic.
- The value head is a ScalarHead on the policy's own final hidden states (shared trunk, as TRL's
  AutoModelForCausalLMWithValueHead): one forward gives log-probs and values, so a rollout needs two
  forwards (policy, reference) rather than three and training one backbone rather than two: half the memory and
  compute of a separate critic on 2 CPU cores or one GPU. The price is that the value loss also moves the policy's
  trunk (vf_coef keeps it small). A critic initialised from the reward model is a possible later option.
- A LoRA policy's reference is itself with its adapters off (reference=None, from_base's choice with lora;
  models.lora.adapters_off), as TRL's trainers take it: its base weights are the SFT model's, so a frozen copy
  would hold them twice (SmolLM2: 540 MB in float32 and the copy's bf16 cast for the run). Log-probs equal the
  copy's to the bit (the same base layers, the adapters' B A x left out).
- Dropout is off throughout (train() keeps every submodule in eval mode, as TRL's PPO disables dropout): with
  dropout the first minibatch's ratio pi / pi_old would not be 1 and the clip would fire on noise. Lightning's
  "Found N module(s) in eval mode" warning at fit start is this.
- Log-probs are computed from logits / temperature, for policy and reference alike: the distribution sampled from.
  top_k / top_p filtering is not applied to them (keep both None for exactly on-policy ratios).
- The log-probs' logits are float32 with autocast off (models.ppo.rollout.head_logprobs): bf16 logits round
  log-probs by ~1e-2, which would make every ratio noisy. Their backward runs in autocast's dtype, as every other
  layer's: the gradient with respect to the logits is made in the forward, chunk by chunk, and the two backward
  matmuls run in bf16 (small preset, trl_compare PPO: see bench/README.md). No device or dtype is fixed here:
  Trainer(accelerator=..., precision=...) decides.
- Speed under bf16 autocast (bench/rlhf.py --base smollm2: one experiment iteration on SmolLM2 with LoRA, 16
  prompts x 24 tokens, 10.0-10.4 s -> 6.8-7.3 s): sampling folds the LoRA adapters into weights cast to bf16 once
  per call (models.generation.autocast_weights); the scoring forwards and the update read the frozen weights
  (LoRA base, reference, reward model) cast once for the whole run (BackboneModule.frozen_weights_cast's CastCache),
  not at each forward; the response logits are one 2-D matmul
  with the temperature applied to the hidden states before it and EOS suppressed in place (head_logprobs).
  The scoring forwards take forward_batch_size episodes at a time (TRL's local_rollout_forward_batch_size), not the
  update's minibatches: without a gradient nothing but a chunk's hidden states is held, and larger matmuls run
  nearer the peak (trl_compare's SmolLM2 PPO, 32 episodes: scoring 5.6-6.8 -> 4.7-5.3 s an iteration).
- Under FSDP (Lightning's ModelParallelStrategy: alignops.stages.training.sharded_strategy) configure_model shards
  the policy, the reference and the reward model block by block (models.sharding) and the heads as units of their
  own; decoding gathers the policy once per rollout (models.sharding.gathered) and folds and casts its weights
  there as above, the scoring forwards' and the update's casts are left to autocast (a sharded weight is gathered
  anew at each forward), and export() gathers the trained policy onto rank 0. The same figures and weights as
  DDP's (tests/models/test_ppo_data_parallel.py).
- Exact resume: the checkpoint carries the global RNG states (models.lm.BackboneModule), the KL controller's beta
  and seed_base; each iteration's sampling seed and minibatch order derive from seed_base and the iteration's
  number alone, so a resumed run samples the same responses on any device, and N data-parallel ranks the same as
  one process. The data position is alignops.data.loaders.resumable_loader's. The checkpoint's
  state_dict holds the policy's trainable parameters (model.*: all of them, or its LoRA adapters) and the value head
  (value_head.*) only: the reference, the reward model and a LoRA policy's frozen base are inputs, so rebuild the
  module from them as for the run, then fit(ckpt_path=...).

Tests: .venv/bin/python -m pytest tests/models/test_ppo_module.py -q
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from models import optim as optimizers
from models.base import CausalLM
from models.generation import GenerationConfig, autocast_weights, generate
from models.heads import ScalarHead
from models.lm import BackboneModule, resolve_lora, with_lora
from models.lora import adapters_off
from models.ppo.advantages import gae, masked_mean, masked_whiten
from models.ppo.config import PPOConfig
from models.ppo.group import grpo_advantages, rloo_advantages
from models.ppo.health import APPROX_KL, EOS_RATE, KL, LENGTH, RATIO_MAX, SFT_LENGTH, HealthBounds, check_health
from models.ppo.kl import AdaptiveKLController, FixedKLController
from models.ppo.losses import kl_penalized_rewards, policy_loss, value_loss
from models.ppo.reward_scale import RewardScale, controlled
from models.ppo.rollout import head_logprobs, response_mask
from models.reward import RewardModel
from models.sharding import gathered, is_sharded, shard_causal_lm, whole_root

Scorer = Callable[[Tensor, Tensor], Tensor]  # (input_ids (B, T), attention_mask (B, T)) -> scores (B,)

METRICS = (
    "ppo/reward",
    "ppo/kl",
    "ppo/entropy",
    "ppo/clipfrac",
    "ppo/approx_kl",
    "ppo/value_loss",
    "ppo/policy_loss",
    "ppo/response_len",
    "ppo/eos_rate",
    "ppo/beta",
    "ppo/episodes_per_sec",
    "ppo/time_generation_s",
    "ppo/time_update_s",
)
# checked after each update, not logged: NaN when a trained weight is not finite (PPOModule._nonfinite_weights)
NONFINITE_WEIGHTS = "policy/nonfinite_weights"
# logged name -> the name models.ppo.health reads; the rest are checked (finite) under their logged names
_HEALTH_NAMES = {"ppo/kl": KL, "ppo/approx_kl": APPROX_KL, "ppo/response_len": LENGTH, "ppo/eos_rate": EOS_RATE}
_FROZEN = ("reference.", "reward.")  # state_dict prefixes left out of checkpoints


GROUP_ADVANTAGES = {"grpo": grpo_advantages, "rloo": rloo_advantages}  # config.GROUP_METHODS' advantages


class UnhealthyRun(RuntimeError):
    """check_health found reasons: reasons (one sentence each), stats (what it checked), iteration (1-based)."""

    def __init__(self, reasons: list[str], stats: dict[str, float], iteration: int) -> None:
        super().__init__(reasons, stats, iteration)  # all in args: the exception pickles (Prefect, subprocesses)
        self.reasons, self.stats, self.iteration = reasons, stats, iteration

    def __str__(self) -> str:
        return (
            f"PPO iteration {self.iteration} is unhealthy:\n  - "
            + "\n  - ".join(self.reasons)
            + "\nResume from the last checkpoint, with a lower lr or a larger init_kl_coef / clip range if it recurs."
        )


@dataclass
class Rollout:
    """One iteration's experience, without gradient. Per-token tensors are (B, N) over the response tokens."""

    sequences: Tensor  # (B, P + N) left-padded prompt, response, pad after EOS
    attention_mask: Tensor  # (B, P + N) 1 = real token: the prompt's, and the response's up to its first EOS
    prompt_len: int  # P: response token t sits at column P + t
    mask: Tensor  # (B, N) response mask, 1 up to and including the first EOS
    logp: Tensor  # policy log-probs of the sampled tokens (the "old" policy of the ratios)
    ref_logp: Tensor  # reference log-probs of the same tokens
    values: Tensor  # value head's estimates, read where each token is predicted
    score: Tensor  # (B,) reward-model score, before penalty and clip
    kl: Tensor  # per-token KL estimate (kl_estimator), 0 where masked
    rewards: Tensor  # KL-penalised per-token rewards, the score at each row's last token
    advantages: Tensor  # GAE advantages, whitened over the batch
    returns: Tensor  # value targets: GAE advantages (before whitening) + values


class PPOModule(BackboneModule):
    """PPO on a policy model with a value head on its trunk, against a frozen reference and reward model.

    self.model is the policy (trained in place: the model passed in is the trained one), self.value_head its
    ScalarHead, self.reference the frozen reference, self.reward the frozen scorer: a RewardModel (its .score is
    called) or any callable (input_ids, attention_mask) -> (B,) scores; an nn.Module moves with the module, a plain
    callable must take the sequences where they are."""

    def __init__(
        self,
        policy: CausalLM,
        reference: CausalLM | None,
        reward: RewardModel | Scorer,
        config: PPOConfig,
        eos_id: int,
        pad_id: int,
        health: HealthBounds | None = None,
        lora: Any = None,  # alignops.config.LoraConfig or its dict (None: no LoRA): adapters on the policy only
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # one iteration makes several optimizer steps: update() runs them
        if reference is policy:
            raise ValueError("reference is the policy object itself: pass a frozen copy, copy.deepcopy(policy)")
        if reference is None and lora is None:
            raise ValueError(
                "reference=None takes the LoRA policy with its adapters off as the reference: give lora, or pass a "
                "frozen copy of the policy, copy.deepcopy(policy)"
            )
        if reference is not None and reference.vocab_size != policy.vocab_size:
            raise ValueError(
                f"policy and reference vocabularies differ ({policy.vocab_size} vs {reference.vocab_size}): "
                "the reference must be the policy's starting point (the SFT model)"
            )
        health = health or HealthBounds()
        lora = resolve_lora(lora)
        hparams = dict(config=config.model_dump(), eos_id=eos_id, pad_id=pad_id, health=asdict(health), lora=lora)
        self.save_hyperparameters(hparams)
        self.config, self.eos_id, self.pad_id, self.health = config, eos_id, pad_id, health
        self.model = with_lora(policy, lora)
        self.value_head = ScalarHead(policy.hidden_size)
        nn.init.zeros_(self.value_head.linear.weight)  # V = 0 everywhere at the start (see Design choices)
        self.reward_scale = RewardScale() if config.normalize_rewards else RewardScale(0.0, 1.0)
        self.sft_length: float | None = None  # the first rollout's mean length (the policy is still SFT's)
        self.kl_history: list[float] = []  # each iteration's ppo/kl, for the KL budget (stop_at_kl)
        # every iteration's randomness derives from this and the iteration's number alone (training_step): drawn
        # here from the global RNG (the run's seed decides it), and not from the global RNG's state at each
        # iteration, which Lightning's DDP reseeds at setup and one process does not
        self.seed_base = int(torch.randint(2**62, ()))
        # None: the policy with its adapters off (models.lora.adapters_off), whose base weights are the SFT model's
        self.reference = None if reference is None else reference.requires_grad_(False)
        self.reward = reward.requires_grad_(False) if isinstance(reward, nn.Module) else reward
        if config.target_kl is None:
            self.kl_controller = FixedKLController(config.init_kl_coef)
        else:
            # kl_horizon None: sized to the run, from the Trainer's max_steps at fit start (on_fit_start)
            self.kl_controller = AdaptiveKLController(config.init_kl_coef, config.target_kl, config.kl_horizon or 1)
        self.train()

    @classmethod
    def from_base(cls, model: CausalLM, dropout: float | None = None, **hparams: Any) -> PPOModule:
        """PPO on `model` itself (trained in place) against it as the reference: with LoRA (hparams' lora) the policy
        with its adapters off, as TRL does, otherwise a frozen copy. dropout must stay None: PPO runs every submodule
        in eval mode (see Design choices)."""
        if dropout is not None:
            raise ValueError("PPO runs without dropout (every submodule in eval mode): leave dropout None")
        reference = None if resolve_lora(hparams.get("lora")) is not None else copy.deepcopy(model)
        return cls(policy=model, reference=reference, **hparams)

    def policy_model(self) -> CausalLM:
        """The trained policy, for saving (model.save) and serving: LoRA merged (export())."""
        return self.export()

    def train(self, mode: bool = True) -> PPOModule:
        """Sets the training flag only: every submodule stays in eval mode, so dropout is off in rollout and update
        alike and the frozen models never leave eval mode."""
        super().train(False)
        self.training = mode
        return self

    def on_fit_start(self) -> None:
        """An adaptive KL horizon left to the run: the run's episodes (iterations * episodes per iteration)."""
        cfg = self.config
        if isinstance(self.kl_controller, AdaptiveKLController) and cfg.kl_horizon is None:
            if self.trainer.max_steps is None or self.trainer.max_steps < 1:
                raise ValueError("PPOConfig.kl_horizon None sizes the horizon to the run: give Trainer(max_steps=...)")
            iterations = max(1, self.trainer.max_steps // cfg.steps_per_iteration)
            self.kl_controller.horizon = iterations * cfg.episodes_per_iteration

    def configure_model(self) -> None:
        """No torch.compile: rollout shapes change every iteration and would recompile. Under FSDP (Lightning's
        ModelParallelStrategy, which hands every module its device mesh) the policy, the reference and the reward
        model are sharded block by block over the data-parallel ranks (models.sharding), the value and reward heads
        as units of their own; called once, before the optimizer is built over the sharded parameters."""
        mesh = self.device_mesh
        if mesh is None or is_sharded(self):
            return
        from torch.distributed.fsdp import fully_shard

        mesh = mesh["data_parallel"]  # ModelParallelStrategy's mesh is (data_parallel, tensor_parallel = 1)
        shard_causal_lm(self.model, mesh)
        fully_shard(self.value_head, mesh=mesh)
        if self.reference is not None:
            shard_causal_lm(self.reference, mesh, frozen=True)
        if isinstance(self.reward, RewardModel):
            shard_causal_lm(self.reward.model, mesh, frozen=True)
            fully_shard(self.reward.head, mesh=mesh)
        # the strategy loads a checkpoint's weights itself, before on_load_checkpoint could add the frozen ones it
        # leaves out (on_save_checkpoint): those keys are then missing by design, and the module keeps its own
        self.strict_loading = False

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # the policy's parameters as every module's (configured optimizer, matrices decay), constant learning rate;
        # the value head in a group of its own with its own learning rate (reference and reward are frozen)
        cfg = self.config
        optim = {"optimizer": cfg.optimizer, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "beta1": 0.9,
                 "beta2": 0.999, "momentum": 0.9, "schedule": "constant", "warmup_steps": 0, "min_lr_ratio": 1.0,
                 "l1": 0.0, "l2": 0.0}  # fmt: skip
        optimizer, _ = optimizers.build(self.model, optim, max_steps=1, fused=not optimizers.gradients_scaled(self))
        optimizer.add_param_group(
            {"params": list(self.value_head.parameters()), "weight_decay": 0.0, "lr": cfg.value_lr or cfg.lr}
        )
        return optimizer

    # ---- one PPO iteration -------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        cfg = self.config
        iteration = self.global_step // cfg.steps_per_iteration + 1
        start = time.perf_counter()
        beta = self.kl_controller.beta
        # the iteration's randomness, whatever the batch size, the device count or the global RNG's state: the
        # sampling seed and the seed of the minibatches' order, from (seed_base, iteration); rank 0's on every rank
        draws = torch.Generator().manual_seed(self.seed_base + iteration)
        sampling_seed, order_seed = self._broadcast(torch.randint(2**62, (2,), generator=draws).tolist())
        r = self.rollout(batch["input_ids"], batch["attention_mask"], seed=sampling_seed)
        B = r.sequences.size(0)
        rollout_stats = {
            "ppo/reward": r.score.mean(),
            "ppo/kl": r.kl.sum(dim=1).mean(),
            "ppo/response_len": r.mask.sum(dim=1).float().mean(),
            "ppo/eos_rate": self._has_eos(r.sequences[:, r.prompt_len :], r.mask).float().mean(),
        }
        # every rank's batch together (data parallel): each rank logs, checks and adapts on the same figures
        stats = dict(
            zip(rollout_stats, self._reduce(torch.stack(list(rollout_stats.values())), "mean").tolist(), strict=True)
        )
        if self.sft_length is None:
            self.sft_length = stats["ppo/response_len"]
        self._check(stats, iteration)  # before any update: a NaN reward must not reach the weights
        generated = time.perf_counter()

        update_stats = self.update(r, critic_only=iteration <= cfg.critic_warmup_iterations, order_seed=order_seed)
        self.kl_controller.update(stats["ppo/kl"], n_steps=B)
        done = time.perf_counter()
        stats.update(update_stats)
        stats.update(
            {
                "ppo/beta": beta,
                "ppo/episodes_per_sec": B / (done - start),
                "ppo/time_generation_s": generated - start,
                "ppo/time_update_s": done - generated,
            }
        )
        self._check(stats, iteration)
        self.log_dict({name: stats[name] for name in METRICS}, on_step=True, on_epoch=False, batch_size=B)
        self.kl_history.append(stats["ppo/kl"])
        if self.kl_budget_spent():  # every rank reads the same reduced KL, so every rank stops at this iteration
            self.trainer.should_stop = True

    def kl_budget_spent(self) -> bool:
        """The mean training KL of the last kl_stop_window iterations has reached stop_at_kl (never without one)."""
        cfg = self.config
        recent = self.kl_history[-cfg.kl_stop_window :]
        return (
            cfg.stop_at_kl is not None
            and len(recent) == cfg.kl_stop_window
            and sum(recent) / len(recent) >= cfg.stop_at_kl
        )

    @torch.no_grad()
    def rollout(self, input_ids: Tensor, attention_mask: Tensor, seed: int | None = None) -> Rollout:
        """Sample responses to left-padded prompts (B, P) and score them: steps 1-2 of an iteration."""
        cfg = self.config
        B, P = input_ids.shape
        if input_ids.size(0) != cfg.rollout_batch_size:
            raise ValueError(
                f"a prompt batch has {B} rows, PPOConfig.rollout_batch_size is {cfg.rollout_batch_size}: give the "
                "loader batch_size=rollout_batch_size and drop_last=True (iterations then map to optimizer steps)"
            )
        if not bool(attention_mask[:, -1].all()):
            raise ValueError("prompts must be left-padded (attention_mask 1 in the last column): responses follow it")
        group = cfg.method in GROUP_ADVANTAGES
        if group:  # each prompt's G samples in adjacent rows: the layout models.ppo.group reads
            input_ids = input_ids.repeat_interleave(cfg.group_size, dim=0)
            attention_mask = attention_mask.repeat_interleave(cfg.group_size, dim=0)
            B = input_ids.size(0)
        # seed None: drawn from the global CPU RNG. Every rank samples from one stream, each of its rows taking the
        # draws of the row it is in every rank's batch together (the loader gives rank r prompts r, r + world, ...
        # of it): data-parallel ranks sample what one process would at world times the batch
        if seed is None:
            seed = self._broadcast(int(torch.randint(2**62, ())))
        world = 1 if self._trainer is None else self.trainer.world_size
        prompts = torch.arange(input_ids.size(0) // (cfg.group_size if group else 1)) * world + self.global_rank
        rows = (prompts[:, None] * cfg.group_size + torch.arange(cfg.group_size)).flatten() if group else prompts
        sampling = GenerationConfig(
            max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k,
            top_p=cfg.top_p, eos_token_id=self.eos_id, pad_token_id=self.pad_id, seed=seed,
            global_rows=tuple(rows.tolist()), global_batch_size=B * world,
            min_new_tokens=cfg.max_new_tokens if cfg.fixed_length else 0,
        )  # fmt: skip
        with gathered(self.model):  # sharded (FSDP): whole weights for the whole decoding, not gathered per token
            sequences, _ = generate(self.model, input_ids, attention_mask, sampling)
        response = sequences[:, P:]  # (B, N)
        mask = response_mask(response, self.eos_id)  # fixed_length: all 1 (EOS could not be drawn)
        full_mask = torch.cat([attention_mask, mask.to(attention_mask.dtype)], dim=1)  # (B, P + N)

        logp, values, ref_logp = [], [], []
        with self._scoring_casts():
            # in chunks of forward_batch_size, not the update's minibatches (see Speed above)
            score = []  # logged as ppo/reward: a control arm's moves show against it
            for i in range(0, B, cfg.forward_batch_size):
                seqs, m = sequences[i : i + cfg.forward_batch_size], full_mask[i : i + cfg.forward_batch_size]
                policy_logp, _, hidden = self._response_logprobs(self.model, seqs, m, P)
                logp.append(policy_logp)
                values.append(torch.zeros_like(policy_logp) if group else self.value_head(hidden).float())
                ref_logp.append(self._reference_logprobs(seqs, m, P))
                score.append(self._score(seqs, m))
        logp, values, ref_logp, score = torch.cat(logp), torch.cat(values), torch.cat(ref_logp), torch.cat(score)

        missing_eos = torch.zeros_like(score) if cfg.fixed_length else (~self._has_eos(response, mask)).float()
        trained_on = self._controlled(score, rows.to(score.device), seed)
        if not self.reward_scale.measured:  # measured on every rank's first rollout together
            self.reward_scale(self._all_gather(trained_on))
        penalised = self.reward_scale(trained_on) + cfg.missing_eos_penalty * missing_eos
        if cfg.reward_clip is not None:
            penalised = penalised.clamp(-cfg.reward_clip, cfg.reward_clip)
        rewards, kl = kl_penalized_rewards(
            penalised, logp, ref_logp, mask, beta=self.kl_controller.beta, estimator=cfg.kl_estimator
        )
        if cfg.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False, all_sum=self._all_sum)
        if group:  # one advantage per response from its group's KL-penalised returns (TRL's RLOO, verl's
            # use_kl_in_reward), on every one of its tokens; no critic, so nothing to whiten or regress on
            sequence_advantage = GROUP_ADVANTAGES[cfg.method](rewards.sum(dim=1), cfg.group_size)
            advantages = torch.where(mask.bool(), sequence_advantage[:, None].expand_as(rewards), 0.0)
            returns = torch.zeros_like(rewards)
        else:
            advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, mask, all_sum=self._all_sum)
        return Rollout(sequences, full_mask, P, mask, logp, ref_logp, values, score, kl, rewards, advantages, returns)

    def update(self, r: Rollout, critic_only: bool = False, order_seed: int | None = None) -> dict[str, float]:
        """ppo_epochs passes over shuffled minibatches of the rollout, one optimizer step each: step 3.

        critic_only (critic warm-up): the value loss alone, through detached hidden states: only the head moves.
        order_seed: seeds the minibatches' order (None: the global CPU RNG draws it)."""
        cfg = self.config
        shuffle = None if order_seed is None else torch.Generator().manual_seed(order_seed)
        optimizer = self.optimizers()
        P = r.prompt_len
        per_step = []
        # the policy's frozen weights (LoRA base layers) read as casts made once for the run, not at every forward
        with autocast_weights(self.model, keep=[self.model.lm_head], cache=self._frozen_casts):
            for _ in range(cfg.ppo_epochs):
                order = torch.randperm(r.sequences.size(0), generator=shuffle).to(r.sequences.device)
                for rows in order.split(cfg.minibatch_size):
                    seqs, mask = r.sequences[rows], r.mask[rows]
                    logp, entropy, hidden = self._response_logprobs(
                        self.model, seqs, r.attention_mask[rows], P, entropy_grad=cfg.ent_coef > 0
                    )
                    pg_loss, pg = policy_loss(logp, r.logp[rows], r.advantages[rows], mask, cfg.clip_range)
                    if cfg.method in GROUP_ADVANTAGES:  # no critic
                        vf_loss = torch.zeros((), device=logp.device)
                    else:
                        values = self.value_head(hidden.detach() if critic_only else hidden).float()
                        vf_loss, _ = value_loss(values, r.values[rows], r.returns[rows], mask, cfg.clip_range_value)
                    # without a bonus the entropy is only reported: it then has no gradient (head_logprobs)
                    entropy = masked_mean(entropy, mask)
                    # Each mean is over this rank's tokens, and data parallelism averages the ranks' gradients, which
                    # would weigh every rank alike however many tokens it has: scaled by the rank's share of the
                    # tokens, the average is the mean over every rank's tokens, one process's over the whole
                    # minibatch (1 on one device)
                    tokens = mask.sum().float()
                    share = tokens / self._reduce(tokens, "mean")
                    pg_loss, vf_loss, entropy = pg_loss * share, vf_loss * share, entropy * share
                    loss = vf_loss if critic_only else pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * entropy
                    optimizer.zero_grad()
                    # backward outside autocast, as PyTorch advises: each op's backward then runs in its forward's
                    # dtype (training_step runs under autocast, where a backward would cast again)
                    with torch.autocast(loss.device.type, enabled=False):
                        self.manual_backward(loss)
                    self.clip_gradients(optimizer, gradient_clip_val=cfg.max_grad_norm, gradient_clip_algorithm="norm")
                    optimizer.step()
                    # torch.autocast caches its casts of trainable weights for the whole region and never checks
                    # that they changed. Lightning's bf16-mixed turns that cache off, but a loop that runs an
                    # iteration in one plain autocast region (bench/rlhf.py, a user's own) had every forward after
                    # the first step read the iteration's starting weights: ratios and clipping blind to the steps.
                    torch.clear_autocast_cache()
                    per_step.append(
                        torch.stack(
                            [pg_loss, vf_loss, entropy, pg.clipfrac * share, pg.approx_kl * share, pg.ratio_max]
                        ).detach()
                    )
        steps = torch.stack(per_step)  # (optimizer steps, 6)
        means = self._reduce(steps[:, :5].mean(dim=0), "mean").tolist()
        names = ("ppo/policy_loss", "ppo/value_loss", "ppo/entropy", "ppo/clipfrac", "ppo/approx_kl")
        return {
            **dict(zip(names, means, strict=True)),
            "ppo/ratio_max": self._reduce(steps[:, 5].max(), "max").item(),
            NONFINITE_WEIGHTS: self._nonfinite_weights(),
        }

    def _nonfinite_weights(self) -> float:
        """0.0, or NaN when a trained weight is not finite on any rank (the health check then stops the run). The
        losses above were computed before the last optimizer step: a step that broke the weights would otherwise
        pass this iteration's check and fail the next rollout's sampling, outside the health check and its roll
        back. Each rank counts its own (its shard, under FSDP)."""
        local = [getattr(p, "to_local", lambda p=p: p)() for p in self.parameters() if p.requires_grad]
        bad = torch.stack([(~torch.isfinite(p.detach())).sum() for p in local]).sum().float()
        return float("nan") if self._reduce(bad, "sum").item() else 0.0

    # ---- pieces ------------------------------------------------------------------------------------------------
    def _response_logprobs(
        self, model: CausalLM, sequences: Tensor, attention_mask: Tensor, P: int, entropy_grad: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(log-probs (B, N) of the response tokens, entropies (B, N), both float32; hidden (B, N, C)) at the N
        positions that predict the response, under softmax(logits / temperature) with EOS impossible under
        fixed_length: the distribution the responses were drawn from (models.ppo.rollout.head_logprobs: float32
        logits, never kept whole; the backward in autocast's dtype). entropy_grad: the entropies carry a gradient.

        Column P - 1 + t predicts response token t (column P + t): the slice [P - 1 : -1] (one-position shift)."""
        hidden = model.hidden_states(sequences, attention_mask=attention_mask)[:, P - 1 : -1]  # (B, N, C)
        B, N, C = hidden.shape
        head = model.lm_head
        device = head.weight.device.type
        low_weight = None  # a frozen lm_head (LoRA) read by the backward as a cast made once for the run
        if torch.is_grad_enabled() and not head.weight.requires_grad and torch.is_autocast_enabled(device):
            low_weight = self._frozen_casts.cast(head.weight, torch.get_autocast_dtype(device))
        logp, entropy = head_logprobs(
            hidden.reshape(B * N, C), head.weight, getattr(head, "bias", None), sequences[:, P:].reshape(B * N),
            self.config.temperature, self.eos_id if self.config.fixed_length else None, entropy_grad, low_weight,
        )  # fmt: skip
        return logp.view(B, N), entropy.view(B, N), hidden

    def _reference_logprobs(self, sequences: Tensor, attention_mask: Tensor, P: int) -> Tensor:
        """The reference's (B, N) response log-probs: the frozen reference's, or the LoRA policy's with its adapters
        off (the same base weights and casts, the adapters' B A x left out)."""
        if self.reference is not None:
            with whole_root(self.reference):  # sharded: its lm_head is read after its forward
                return self._response_logprobs(self.reference, sequences, attention_mask, P)[0]
        with adapters_off(self.model):
            return self._response_logprobs(self.model, sequences, attention_mask, P)[0]

    def _scoring_casts(self) -> contextlib.ExitStack:
        """The rollout's scoring forwards with every frozen Linear weight (the reference's, the reward model's, the
        policy's LoRA base layers) in the autocast dtype, cast once for the run (models.generation.autocast_weights,
        the module's CastCache), not at each forward; the lm_heads stay float32, read in float32 by
        _response_logprobs (or, the reward model's, not read). PPO's own frozen_weights_cast, the lm_heads kept."""
        stack, cache = contextlib.ExitStack(), self._frozen_casts  # kept for the run: the weights never change
        stack.enter_context(autocast_weights(self.model, keep=[self.model.lm_head], cache=cache))
        if self.reference is not None:
            stack.enter_context(autocast_weights(self.reference, keep=[self.reference.lm_head], cache=cache))
        if isinstance(self.reward, RewardModel):
            stack.enter_context(autocast_weights(self.reward, keep=[self.reward.model.lm_head], cache=cache))
        return stack

    def _score(self, sequences: Tensor, attention_mask: Tensor) -> Tensor:
        """The reward model's (B,) float32 scores of right-aligned sequences: each row's real tokens first, in
        order, padding after (prompt padding was on the left, response padding on the right)."""
        order = torch.argsort((attention_mask == 0).int(), dim=1, stable=True)  # real tokens first, order kept
        ids, mask = sequences.gather(1, order), attention_mask.gather(1, order)
        score = self.reward.score(ids, mask) if isinstance(self.reward, RewardModel) else self.reward(ids, mask)
        if score.shape != (sequences.size(0),):
            raise ValueError(f"the reward scorer returned shape {tuple(score.shape)}, expected ({sequences.size(0)},)")
        return score.float()

    # ---- data parallelism: every rank's batch together -----------------------------------------------------------
    # Under DDP each rank rolls out its own share of the prompts (the loader shards them) and Lightning averages the
    # gradients of every manual_backward. What is computed from a batch rather than per sample is reduced here, so
    # that every rank whitens, normalises, shuffles (the shuffled control), logs, checks health and adapts the KL
    # coefficient on the same figures: one rank alone stopping on a health check would leave the others waiting for
    # it. The ranks' batches are the same size, so the mean over ranks is the batch mean. With the sampling seed
    # shared and each row's draws its own (rollout), and the losses weighed by each rank's share of the tokens
    # (update), N ranks train as one process at N times the batch (tests/models/test_ppo_data_parallel.py).
    def _controlled(self, score: Tensor, rows: Tensor, seed: int) -> Tensor:
        """The scores trained on under config.reward_control (reward_scale.controlled), rows being this rank's rows
        of every rank's batch. "shuffle" permutes every rank's scores together, in that global order, drawn from the
        iteration's sampling seed: the permutation one process draws at world times the batch, on any device count,
        and the same again on resume."""
        if self.config.reward_control != "shuffle":
            return controlled(score, self.config.reward_control)
        everyone, at = self._all_gather(score), self._all_gather(rows)
        in_order = torch.empty_like(everyone).index_copy_(0, at, everyone)
        # seed + 1: a generator of its own, not the sampling one's (seeded with seed); MT19937 spreads adjacent seeds
        return controlled(in_order, "shuffle", torch.Generator().manual_seed(seed + 1))[rows]

    def _reduce(self, t: Tensor, op: str) -> Tensor:
        """t reduced over the ranks ("sum", "mean" or "max") by Lightning's strategy (the identity on one device);
        t itself outside a Trainer."""
        return t if self._trainer is None else self.trainer.strategy.reduce(t.clone(), reduce_op=op)

    def _broadcast(self, value: int) -> int:
        """Rank 0's value on every rank (value itself outside a Trainer)."""
        return value if self._trainer is None else self.trainer.strategy.broadcast(value, src=0)

    def _all_sum(self, t: Tensor) -> Tensor:
        return self._reduce(t, "sum")

    def _all_gather(self, t: Tensor) -> Tensor:
        """(world * B,) every rank's t, in rank order."""
        return t if self._trainer is None else self.all_gather(t).reshape(-1)

    def _has_eos(self, response: Tensor, mask: Tensor) -> Tensor:
        """(B,) bool: the response (B, N) ended with EOS, rather than at max_new_tokens."""
        return ((response == self.eos_id) & mask.bool()).any(dim=1)

    def _check(self, stats: dict[str, float], iteration: int) -> None:
        checked = {_HEALTH_NAMES.get(name, name): value for name, value in stats.items()}
        if "ppo/ratio_max" in checked:
            checked[RATIO_MAX] = checked.pop("ppo/ratio_max")
        checked[SFT_LENGTH] = self.sft_length
        reasons = check_health(checked, self.health)
        if reasons:
            raise UnhealthyRun(reasons, checked, iteration)

    # ---- exact resume ------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # RNG states
        checkpoint["kl_controller"] = self.kl_controller.state_dict()
        checkpoint["reward_scale"] = self.reward_scale.state_dict()
        checkpoint["sft_length"] = self.sft_length
        checkpoint["kl_history"] = self.kl_history
        checkpoint["seed_base"] = self.seed_base
        frozen = self.frozen_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.kl_controller.load_state_dict(checkpoint["kl_controller"])
        self.reward_scale.load_state_dict(checkpoint["reward_scale"])
        self.sft_length = checkpoint["sft_length"]
        self.kl_history = list(checkpoint.get("kl_history", []))  # absent from checkpoints before the KL budget
        self.seed_base = checkpoint["seed_base"]
        if "state_dict" not in checkpoint:  # sharded: the strategy has loaded the weights already (configure_model)
            return
        # the frozen weights are this module's own (the checkpoint left them out): keep them, strict loading stays
        frozen = self.frozen_keys()
        own = {k: v for k, v in self.state_dict().items() if k in frozen}
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **own}

    def frozen_keys(self) -> set[str]:
        """state_dict keys a checkpoint leaves out: the reference and reward model, and the policy's frozen
        parameters (a LoRA base: 135 M of SmolLM2's weights against 2.4 M trained), which no step changes. Saving
        them cost 2 s an iteration of the sentiment experiment (a 540 MB checkpoint every 2 iterations)."""
        frozen = {k for k in self.state_dict() if k.startswith(_FROZEN)}
        # remove_duplicate=False: a parameter reachable under two names (HFCausalLM's model.* and backbone.*)
        return frozen | {
            f"model.{n}" for n, p in self.model.named_parameters(remove_duplicate=False) if not p.requires_grad
        }
