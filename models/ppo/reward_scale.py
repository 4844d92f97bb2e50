"""Reward normalisation for PPO: scores as z-scores of the SFT policy's own samples, so every shaping term (the
missing-EOS penalty, the clip, the KL coefficient) is stated in standard deviations of the reward, whatever scale
the reward model happens to have (a Bradley-Terry head's scores are only fixed up to an affine map).

    scale = RewardScale()                   # unmeasured: the first batch it sees measures it
    z = scale(scores)                       # first call: the SFT policy's first rollout (before any update)
    controlled(scores, "shuffle")           # an experiment's control: the scores without their signal
    state = scale.state_dict()              # {"mean": ..., "std": ...}: checkpointed, so a resumed run agrees

The statistics are measured once and then frozen (not running): a running mean would move the target as the
policy improves and hide the gain; frozen, a z of +1 always means "one SFT standard deviation better than SFT".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 1e-6  # a batch whose scores are all equal has std 0: its z-scores are 0, not a division by zero


class RewardScale:
    """z = (score - mean) / max(std, EPS), with mean and std measured on the first batch scored."""

    def __init__(self, mean: float | None = None, std: float | None = None) -> None:
        if (mean is None) != (std is None):
            raise ValueError("give RewardScale both mean and std, or neither (measured on the first batch)")
        if std is not None and not std >= 0:
            raise ValueError(f"RewardScale std must be >= 0, got {std}")
        self.mean, self.std = mean, std

    @property
    def measured(self) -> bool:
        return self.mean is not None

    def __call__(self, scores: Tensor) -> Tensor:
        """scores (B,) -> z-scores (B,); measures mean and (unbiased) std on the first call."""
        if not self.measured:
            if scores.numel() < 2:
                raise ValueError("RewardScale needs at least 2 scores to measure a standard deviation")
            mean, std = float(scores.mean()), float(scores.std())
            if not (math.isfinite(mean) and math.isfinite(std)):
                return scores  # a NaN batch: left as it is, for the health check to stop the run
            self.mean, self.std = mean, std
        return (scores - self.mean) / max(self.std, EPS)

    def state_dict(self) -> dict[str, float | None]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.mean, self.std = state["mean"], state["std"]


def controlled(scores: Tensor, control: str, generator: torch.Generator | None = None) -> Tensor:
    """The scores an experiment's control arm trains on (Ziegler et al. 2019's sanity checks): "negate" flips the
    reward's direction, so the policy should move the opposite way; "shuffle" permutes the scores across the
    rollout batch (drawn from generator, a CPU one; None: the global RNG), keeping their distribution and removing
    their link to the responses, so the policy should not move at all; "none" returns them unchanged."""
    if control == "none":
        return scores
    if control == "negate":
        return -scores
    if control == "shuffle":
        return scores[torch.randperm(scores.numel(), generator=generator).to(scores.device)]
    raise ValueError(f"unknown reward control {control!r}: none, negate or shuffle")
