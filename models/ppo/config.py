"""PPOConfig: the RL algorithm's settings (PPO, GRPO, RLOO), the one home of every field and default.

    config = PPOConfig(rollout_batch_size=64, minibatch_size=16, ppo_epochs=4, max_new_tokens=64)
    config = PPOConfig(method="grpo", group_size=8)

A pydantic model with no torch import, so alignops.config's PPOStageConfig inherits it (the stage adds the models,
iterations and health bounds) instead of repeating its fields: `ppo.lr=...` in a preset and PPOConfig(lr=...) are
the same field, with the same default and the same validation. Invalid values raise pydantic's ValidationError (a
ValueError) naming the field.

kl_estimator "k3" is a fine KL *estimate* but a poor KL *reward*: the policy gradient of its penalty is
grad KL(pi||ref) - grad KL(ref||pi), near 0 close to the reference, so it hardly pulls back (measured, tiny GPT,
beta 100, 16 iterations: with k3 the KL grew steadily to 1.3 nats, with k1 it levelled off at 0.08). Keep "k1"
unless comparing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GROUP_METHODS = ("grpo", "rloo")  # critic-free: advantages from group_size samples of each prompt (models.ppo.group)


class PPOConfig(BaseModel):
    """One RL run's algorithm settings; every reward-shaping term is in standard deviations of the SFT policy's
    reward-model scores when normalize_rewards is on (the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["ppo", "grpo", "rloo"] = Field(
        "ppo", description="ppo (critic, GAE) or the critic-free grpo / rloo (group_size samples per prompt)."
    )
    group_size: int = Field(4, ge=1, description="grpo / rloo: responses sampled per prompt (the group).")
    rollout_batch_size: int = Field(64, ge=1, description="Prompts sampled per iteration (the loader's batch).")
    minibatch_size: int = Field(16, ge=1, description="Episodes per optimizer step; divides the iteration's episodes.")
    ppo_epochs: int = Field(4, ge=1, description="Passes over each rollout.")
    forward_batch_size: int = Field(
        64,
        ge=1,
        description="Episodes per scoring forward in the rollout (policy, reference, reward model; no gradient): "
        "larger runs the matmuls nearer their peak, smaller bounds the memory (TRL's "
        "local_rollout_forward_batch_size).",
    )
    max_new_tokens: int = Field(64, ge=1, description="Response length cap; no EOS by then counts as missing EOS.")
    fixed_length: bool = Field(
        False,
        description="Every response is max_new_tokens long: EOS suppressed in sampling and in the log-probs (no "
        "missing-EOS penalty); length cannot be what the reward pays for (Ziegler et al.'s continuations).",
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature; log-probs use the same one.")
    top_k: int | None = Field(None, ge=1, description="Sampling filter; None keeps the ratios exactly on-policy.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus filter; None keeps the ratios on-policy.")
    gamma: float = Field(1.0, gt=0, le=1, description="Per-token discount (1: the episode is one response).")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    clip_range: float = Field(0.2, gt=0, description="PPO ratio clip epsilon.")
    clip_range_value: float = Field(0.2, gt=0, description="Value clip around the rollout's values.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss (the value head shares the trunk).")
    ent_coef: float = Field(0.0, ge=0, description="Weight of the entropy bonus (0: off, as InstructGPT).")
    init_kl_coef: float = Field(0.05, ge=0, description="Beta of the per-token KL(policy || reference) penalty.")
    target_kl: float | None = Field(None, gt=0, description="Adaptive beta towards this KL, nats; None: fixed beta.")
    kl_horizon: int | None = Field(
        None, ge=1, description="Adaptive beta's horizon in episodes; None: the run's episodes (sized to the run)."
    )
    stop_at_kl: float | None = Field(
        None,
        gt=0,
        description="A KL budget, nats: stop once the mean training KL of the last kl_stop_window iterations "
        "reaches it (runs compared at one KL, as Gao et al. 2022 compare them); None: every iteration runs.",
    )
    kl_stop_window: int = Field(5, ge=1, description="Iterations averaged for stop_at_kl (one iteration's is noisy).")
    kl_estimator: Literal["k1", "k3"] = Field("k1", description="Per-token KL estimator in the reward: k1 or k3.")
    whiten_rewards: bool = Field(False, description="Whiten per-token rewards (scale only) before GAE.")
    reward_clip: float | None = Field(None, gt=0, description="Clamp the penalised score to +-this; None: off.")
    missing_eos_penalty: float = Field(
        0.0, le=0, description="Added to the (normalised) score of a response without EOS; e.g. -1.0 = one std."
    )
    normalize_rewards: bool = Field(True, description="Z-score rewards by the first (SFT) rollout's mean and std.")
    reward_control: Literal["none", "negate", "shuffle"] = Field(
        "none",
        description="Experiment controls: negate the scores (steer the other way) or shuffle them within each "
        "rollout batch, every rank's rows together (no signal); none for real training.",
    )
    optimizer: Literal["adamw", "adam", "sgd", "adagrad"] = Field(
        "adamw", description="Optimizer of the policy and the value head (constant learning rate; SGD momentum 0.9)."
    )
    lr: float = Field(1e-5, gt=0, description="Learning rate (constant) of the policy.")
    value_lr: float | None = Field(None, gt=0, description="Learning rate of the value head; None: lr.")
    critic_warmup_iterations: int = Field(0, ge=0, description="First iterations train the value head only.")
    weight_decay: float = Field(0.0, ge=0, description="Decay of matrices (biases and gains never decay).")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient norm clip per optimizer step.")

    @model_validator(mode="after")
    def _consistent(self) -> PPOConfig:
        if self.method in GROUP_METHODS and self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 for {self.method} (a group baseline), got {self.group_size}")
        if self.episodes_per_iteration % self.minibatch_size:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must divide rollout_batch_size ({self.rollout_batch_size})"
                f" times the group size ({self.episodes_per_iteration} episodes): every optimizer step sees the same "
                "number of episodes"
            )
        return self

    @property
    def episodes_per_iteration(self) -> int:
        """Responses sampled per iteration: one per prompt for ppo, group_size per prompt for grpo / rloo."""
        return self.rollout_batch_size * (self.group_size if self.method in GROUP_METHODS else 1)

    @property
    def steps_per_iteration(self) -> int:
        """Optimizer steps (Trainer.global_step) per iteration."""
        return self.ppo_epochs * (self.episodes_per_iteration // self.minibatch_size)

    def algorithm(self) -> PPOConfig:
        """The algorithm's fields alone (a subclass, the stage's config, carries more)."""
        return PPOConfig(**self.model_dump(include=set(PPOConfig.model_fields)))
