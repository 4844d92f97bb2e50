"""Group-relative advantages for critic-free RL (GRPO, RLOO): G sampled responses per prompt, each response's
advantage read from its own group's rewards, so no value head is trained.

    scores = reward(prompts repeated G times, responses)        # (B * G,), rows of one prompt adjacent
    adv = grpo_advantages(scores, group_size=G)                 # (B * G,) one scalar per response
    adv = rloo_advantages(scores, group_size=G)
    token_adv = adv[:, None].expand_as(mask)                    # the same advantage on every response token

Definitions, as TRL (grpo_trainer.py, rloo_trainer.py) and verl (core_algos.compute_grpo_outcome_advantage,
compute_rloo_outcome_advantage):
- GRPO (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean(group)) / (std(group) + eps), std unbiased (torch's
  default, as TRL and verl); scale_by_std=False gives Dr. GRPO's r_i - mean(group) (Liu et al. 2025).
- RLOO (Ahmadian et al. 2024, after Kool et al. 2019): A_i = r_i - mean(r_j, j != i)
  = G / (G - 1) * (r_i - mean(group)), the leave-one-out baseline, unbiased without a critic.

Groups are contiguous: rows [k * G, (k + 1) * G) are prompt k's G samples (repeat_interleave the prompts).
"""

from __future__ import annotations

from torch import Tensor


def _groups(scores: Tensor, group_size: int, least: int) -> Tensor:
    """scores (B * G,) as (B, G); refuses a size that does not divide, or a group too small for the baseline."""
    if scores.dim() != 1:
        raise ValueError(f"scores must be one number per response, shape (B * G,), got {tuple(scores.shape)}")
    if group_size < least:
        raise ValueError(f"group_size must be >= {least} for a group baseline, got {group_size}")
    if scores.numel() % group_size:
        raise ValueError(
            f"{scores.numel()} scores do not split into groups of {group_size}: sample group_size responses per prompt"
        )
    return scores.float().view(-1, group_size)


def grpo_advantages(scores: Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """(r - group mean) / (group std + eps) per response (B * G,); without scale_by_std, r - group mean.

    A group whose responses all scored alike gets advantages 0: it carries no signal."""
    groups = _groups(scores, group_size, least=2)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale_by_std:
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


def rloo_advantages(scores: Tensor, group_size: int) -> Tensor:
    """r_i - mean of the other G - 1 rewards of its group, per response (B * G,)."""
    groups = _groups(scores, group_size, least=2)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).reshape(-1)
