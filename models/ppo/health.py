"""Run-health checks for PPO: a pure function from one step's metrics to the reasons the run looks unhealthy.

    reasons = check_health({"objective/kl": 3.1, "policy/approx_kl": 0.02, ...}, HealthBounds(max_kl=15.0))
    if reasons: stop or roll back, and log the reasons

stats maps metric names to floats (0-dim tensors work too). Any non-finite value, under any name, is a reason.
The bound checks read the metrics named below; a check whose metric is absent is skipped, so the same function
runs on rollout metrics alone or on a full step's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KL = "objective/kl"  # mean over sequences of summed per-token KL(policy || ref), nats
APPROX_KL = "policy/approx_kl"  # mean per-token KL(old || new) of one update (losses.PolicyStats.approx_kl)
RATIO_MAX = "policy/ratio_max"  # largest pi / pi_old over the batch's tokens
LENGTH = "response/length_mean"  # mean response length in tokens, EOS included
EOS_RATE = "response/eos_rate"  # fraction of responses that ended with EOS before max_new_tokens
SFT_LENGTH = "response/sft_length_mean"  # the starting (SFT) policy's mean response length, tokens: the yardstick


@dataclass
class HealthBounds:
    max_kl: float = 20.0  # objective/kl above it: the policy left the reference (Ziegler et al. target 6 nats)
    max_approx_kl: float = 0.2  # policy/approx_kl above it: one update moved too far (healthy: ~0.01-0.05)
    max_ratio: float = 10.0  # policy/ratio_max above it: a token's probability jumped tenfold in one update
    min_response_length: float = 2.0  # response/length_mean below it: the policy collapsed onto EOS
    max_response_length: float = math.inf  # above it: rambling; off by default, set below max_new_tokens
    min_eos_rate: float = 0.0  # response/eos_rate below it: responses stopped ending; off by default
    min_length_fraction: float = 0.0  # response/length_mean below this * the SFT policy's: collapsing; 0: off


def check_health(stats: dict[str, float], bounds: HealthBounds) -> list[str]:
    """Every reason the run is unhealthy, one sentence each (metric, value, bound); [] when healthy."""
    values = {name: float(value) for name, value in stats.items()}
    reasons = [
        f"{name} is {value}, not a finite number: the run diverged"
        for name, value in values.items()
        if not math.isfinite(value)
    ]
    checks = [  # (metric, bound name, bound, True when value is above an upper bound, what it means)
        (KL, "max_kl", bounds.max_kl, True, "the policy drifted too far from the reference model"),
        (APPROX_KL, "max_approx_kl", bounds.max_approx_kl, True, "one update moved the policy too far"),
        (RATIO_MAX, "max_ratio", bounds.max_ratio, True, "a token's probability changed too much in one update"),
        (LENGTH, "min_response_length", bounds.min_response_length, False, "responses collapsed to a few tokens"),
        (LENGTH, "max_response_length", bounds.max_response_length, True, "responses grew too long"),
        (EOS_RATE, "min_eos_rate", bounds.min_eos_rate, False, "too few responses end with EOS"),
    ]
    if SFT_LENGTH in values and math.isfinite(values[SFT_LENGTH]):  # a bound relative to where the run started
        sft_bound = bounds.min_length_fraction * values[SFT_LENGTH]
        checks.append((LENGTH, "min_length_fraction * SFT length", sft_bound, False, "responses shrank from SFT's"))
    for metric, bound_name, bound, upper, meaning in checks:
        value = values.get(metric)
        if value is None or not math.isfinite(value):
            continue  # absent, or already reported as non-finite
        if (upper and value > bound) or (not upper and value < bound):
            side = "above" if upper else "below"
            reasons.append(f"{metric} = {value:.4g} is {side} {bound_name} = {bound:.4g}: {meaning}")
    return reasons
