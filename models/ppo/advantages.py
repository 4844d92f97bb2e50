"""Masked statistics and generalized advantage estimation over response tokens.

x, rewards, values: (B, T) per response token; mask (B, T) float or bool, 1 = real token. Masked positions may
hold anything (padding, NaN): they are selected away with torch.where, never multiplied by 0.

    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)   # (B, T) each, 0 where masked
    advantages = masked_whiten(advantages, mask)                            # mean 0, variance 1 over the batch
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """sum(x * mask) / sum(mask), over all positions (dim None) or along dim; NaN where the mask is empty."""
    m = mask.bool()
    total = torch.where(m, x, 0.0)
    if dim is None:
        return total.sum() / m.sum()
    return total.sum(dim) / m.sum(dim)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """sum(mask * (x - mean)^2) / (n - 1), or / n when not unbiased; n = sum(mask), over all positions."""
    m = mask.bool()
    n = m.sum()
    centered = torch.where(m, x - masked_mean(x, m), 0.0)
    var = (centered**2).sum() / n
    if unbiased:
        if n < 2:
            raise ValueError(f"unbiased masked_var needs at least 2 unmasked values, the mask has {int(n)}")
        var = var * n / (n - 1)
    return var


def masked_whiten(
    x: Tensor, mask: Tensor, shift_mean: bool = True, all_sum: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """(x - mean) / sqrt(var + 1e-8) over the mask (mean added back if not shift_mean); 0 where masked.

    all_sum: under data parallelism, sums a tensor over the ranks (an all-reduce), so mean and variance are those
    of every rank's batch together, as one process would compute them over the whole batch."""
    m = mask.bool()
    if all_sum is None:
        mean, var = masked_mean(x, m), masked_var(x, m)
    else:
        total, n = all_sum(torch.stack([torch.where(m, x, 0.0).sum(), m.sum().to(x.dtype)]))
        mean = total / n
        var = all_sum(torch.where(m, (x - mean) ** 2, 0.0).sum()) / (n - 1)  # unbiased, as masked_var
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(m, whitened, 0.0)


@torch.no_grad()
def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """A_t = delta_t + gamma * lam * A_t+1, delta_t = r_t + gamma * V_t+1 - V_t; returns = A + V.

    Schulman et al. 2016, over each row's real tokens only: "t + 1" is the next real token of the row, so padding
    on either side (or a hole) does not change a row's result, and the value after its last real token is 0
    (the episode ended). Advantages and returns are targets: computed without gradient, 0 where masked."""
    m = mask.bool()
    rewards = torch.where(m, rewards, 0.0)
    values = torch.where(m, values, 0.0)
    next_value = torch.zeros_like(rewards[:, 0])  # (B,) value of the next real token; 0 past the last
    next_adv = torch.zeros_like(rewards[:, 0])  # (B,) advantage of the next real token
    columns = []
    for t in reversed(range(rewards.size(1))):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        # a masked position passes the next real token's value and advantage through to the one before it
        next_adv = torch.where(m[:, t], adv, next_adv)
        next_value = torch.where(m[:, t], values[:, t], next_value)
        columns.append(torch.where(m[:, t], adv, 0.0))
    advantages = torch.stack(columns[::-1], dim=1)  # (B, T)
    return advantages, advantages + values
