"""KL estimators between the policy and a reference model, and the controllers that set the KL coefficient beta.

logp, ref_logp: (B, T) log-probs of the sampled tokens under the policy (which sampled them) and the reference.
Both estimators are per token; sum over a row's mask for the sequence KL(policy || ref) (Schulman,
"Approximating KL divergence", 2020):

    kl_k1 = logp - ref_logp                     unbiased, noisy, can be negative per token
    kl_k3 = (r - 1) - log r, r = p_ref / p      unbiased, lower variance, always >= 0; ~ k1^2 / 2 near r = 1

    ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10_000)
    beta = ctl.update(current_kl=mean_sequence_kl, n_steps=batch_size)   # after every rollout batch
    state = ctl.state_dict(); ctl.load_state_dict(state)                 # save with a checkpoint, resume
"""

from __future__ import annotations

import torch
from torch import Tensor


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = logp - ref_logp, per token."""
    return logp - ref_logp


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = (r - 1) - log r with r = exp(ref_logp - logp), per token; >= 0."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r  # expm1: exact near r = 1, where k3 ~ log_r^2 / 2 is tiny


class FixedKLController:
    """A constant beta; update() changes nothing. Same interface as AdaptiveKLController."""

    def __init__(self, beta: float) -> None:
        if beta < 0:
            raise ValueError(f"KL coefficient beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def update(self, current_kl: float, n_steps: int) -> float:
        """beta, unchanged."""
        return self.beta

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])


class AdaptiveKLController:
    """Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences": beta follows the KL to a target.

    error = clip(current_kl / target - 1, -0.2, 0.2); beta *= 1 + error * n_steps / horizon.
    current_kl is the mean per-sequence KL(policy || ref) of the last batch, in nats; n_steps the number of
    sequences (episodes) in it; horizon how many sequences it takes to close a 20% error by about e^0.2."""

    def __init__(self, init_beta: float, target: float, horizon: int) -> None:
        if init_beta <= 0:
            raise ValueError(f"init_beta must be > 0 (beta only ever scales), got {init_beta}")
        if target <= 0:
            raise ValueError(f"target KL must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.beta = float(init_beta)
        self.target = float(target)
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        """beta *= 1 + clip(current_kl / target - 1, -0.2, 0.2) * n_steps / horizon; returns the new beta."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta

    def state_dict(self) -> dict[str, float]:
        """The learned beta; target and horizon are configuration and come from the run's config."""
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])
