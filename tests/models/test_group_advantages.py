"""Tests of models.ppo.group against groups worked out by hand."""

from __future__ import annotations

import pytest
import torch

from models.ppo.group import grpo_advantages, rloo_advantages


def close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), atol=1e-4, rtol=0)


def test_grpo_normalises_within_each_group():
    # group 1: (1, 2, 3): mean 2, unbiased std 1 -> (-1, 0, 1)
    # group 2: (0, 0, 6): mean 2, std sqrt((4 + 4 + 16) / 2) = sqrt(12) = 3.4641 -> (-0.57735, -0.57735, 1.15470)
    scores = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 6.0])
    close(grpo_advantages(scores, 3), [-1.0, 0.0, 1.0, -0.57735, -0.57735, 1.15470])


def test_grpo_without_std_is_dr_grpo_and_a_uniform_group_is_zero():
    scores = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    close(grpo_advantages(scores, 3, scale_by_std=False), [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    close(grpo_advantages(scores, 3)[3:], [0.0, 0.0, 0.0])  # std 0: no signal, not a division by zero


def test_rloo_subtracts_the_mean_of_the_others():
    # group (1, 2, 6): others' means 4, 3.5, 1.5 -> (-3, -1.5, 4.5); group (4, 0): (4, -4)
    close(rloo_advantages(torch.tensor([1.0, 2.0, 6.0]), 3), [-3.0, -1.5, 4.5])
    close(rloo_advantages(torch.tensor([4.0, 0.0, 1.0, 1.0]), 2), [4.0, -4.0, 0.0, 0.0])


def test_rloo_is_grpo_centring_scaled_by_g_over_g_minus_1():
    scores = torch.randn(12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rloo_advantages(scores, 4), 4 / 3 * grpo_advantages(scores, 4, scale_by_std=False))


def test_groups_that_do_not_divide_or_are_too_small_are_refused():
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        grpo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        rloo_advantages(torch.zeros(3), 1)
