"""The PPO objective for RLHF: KL-penalised rewards, the clipped policy and value losses, entropy.

Per-token tensors are (B, T) over response tokens, mask (B, T) float or bool, 1 = real token; score (B,) is the
reward model's scalar for each whole response. Losses are masked means over all real tokens of the batch, 0-dim
tensors; stats are small dataclasses of detached 0-dim tensors.

    rewards, kl = kl_penalized_rewards(score, logp, ref_logp, mask, beta=kl_ctl.beta)   # rollout, no grad
    advantages, returns = gae(rewards, old_values, mask, gamma, lam)                     # models.ppo.advantages
    pg_loss, pg_stats = policy_loss(new_logp, logp, masked_whiten(advantages, mask), mask, clip_range=0.2)
    vf_loss, vf_stats = value_loss(new_values, old_values, returns, mask, clip_range_value=0.2)
    loss = pg_loss + vf_coef * vf_loss
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.ppo.advantages import masked_mean
from models.ppo.kl import kl_k1, kl_k3
from models.ppo.rollout import token_entropy


def kl_penalized_rewards(
    score: Tensor,
    logp: Tensor,
    ref_logp: Tensor,
    mask: Tensor,
    beta: float,
    estimator: str = "k1",
    clip_kl: float | None = None,
) -> tuple[Tensor, Tensor]:
    """r_t = -beta * kl_t, plus score at each row's last real token; returns (rewards, kl), both (B, T), 0 masked.

    kl_t is kl_k1 or kl_k3 of (logp, ref_logp) (models.ppo.kl), clamped to [-clip_kl, clip_kl] when clip_kl is set.
    The InstructGPT reward: R(x, y) = r_theta(x, y) - beta * log(pi(y | x) / pi_ref(y | x)), spread over tokens."""
    if estimator not in ("k1", "k3"):
        raise ValueError(f"estimator must be 'k1' or 'k3', got {estimator!r}")
    m = mask.bool()
    kl = kl_k1(logp, ref_logp) if estimator == "k1" else kl_k3(logp, ref_logp)
    if clip_kl is not None:
        kl = kl.clamp(-clip_kl, clip_kl)
    kl = torch.where(m, kl, 0.0)
    positions = torch.arange(m.size(1), device=m.device)
    last = (positions * m.long()).amax(dim=1, keepdim=True)  # (B, 1) index of the last real token
    rewards = (-beta * kl).scatter_add(1, last, score.to(kl.dtype).unsqueeze(1))
    return rewards, kl


@dataclass
class PolicyStats:
    clipfrac: Tensor  # fraction of real tokens whose clipped term won the max (they pass no gradient)
    approx_kl: Tensor  # masked mean of k3 = (ratio - 1) - log ratio: estimates KL(old || new), >= 0
    ratio_mean: Tensor  # masked mean of pi / pi_old
    ratio_max: Tensor  # largest pi / pi_old over real tokens


def policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_range: float
) -> tuple[Tensor, PolicyStats]:
    """masked_mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))), ratio = exp(logp - old_logp).

    PPO's clipped surrogate (Schulman et al. 2017), negated to minimise. logp carries the gradient; old_logp
    and advantages are constants from the rollout."""
    m = mask.bool()
    # zeroed before exp: an overflowing ratio at a masked position would turn its zero gradient into NaN
    log_ratio = torch.where(m, logp - old_logp, 0.0)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), m)
    with torch.no_grad():
        stats = PolicyStats(
            clipfrac=masked_mean((clipped > unclipped).float(), m),
            approx_kl=masked_mean(torch.expm1(log_ratio) - log_ratio, m),  # kl_k3(old_logp, logp)
            ratio_mean=masked_mean(ratio, m),
            ratio_max=torch.where(m, ratio, float("-inf")).amax(),
        )
    return loss, stats


@dataclass
class ValueStats:
    vf_clipfrac: Tensor  # fraction of real tokens whose clipped squared error won the max


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range_value: float
) -> tuple[Tensor, ValueStats]:
    """0.5 * masked_mean(max((V - R)^2, (V_clip - R)^2)), V_clip = V_old + clip(V - V_old, -eps, eps)."""
    m = mask.bool()
    values = torch.where(m, values, 0.0)  # masked positions may hold anything; keep their gradient finite
    clipped_values = old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), m)
    with torch.no_grad():
        stats = ValueStats(vf_clipfrac=masked_mean((clipped_error > unclipped_error).float(), m))
    return loss, stats


def entropy_from_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """masked_mean over tokens of H_t = -sum_v p_t,v log p_t,v; logits (B, T, V), mask (B, T) -> 0-dim."""
    return masked_mean(token_entropy(logits), mask)
