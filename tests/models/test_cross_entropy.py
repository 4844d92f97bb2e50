"""models.cross_entropy against torch's F.cross_entropy: the same loss and gradient, ignored rows included, across
chunk boundaries, in float32 and from bf16 logits, and with the incoming gradient scaled."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models.cross_entropy as ce
from models.cross_entropy import IGNORE_INDEX, cross_entropy_sum


def _case(N: int = 37, V: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, V, generator=g) * 3
    targets = torch.randint(V, (N,), generator=g)
    targets[::5] = IGNORE_INDEX
    return logits, targets


def _torch(logits: torch.Tensor, targets: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().float().requires_grad_()
    loss = F.cross_entropy(x, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    (loss * scale).backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("chunk_elements", [50, 7 * 50, 10**6])  # one row, rows that do not divide N, one chunk
def test_float32_loss_and_gradient_equal_torch_cross_entropy(monkeypatch, chunk_elements):
    monkeypatch.setattr(ce, "CHUNK_ELEMENTS", chunk_elements)
    logits, targets = _case()
    expected_loss, expected_grad = _torch(logits, targets, scale=0.25)
    x = logits.clone().requires_grad_()
    loss = cross_entropy_sum(x, targets)
    (loss * 0.25).backward()  # the incoming gradient (a mean's 1 / n, a loss weight) scales the made gradient
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-5, atol=1e-7)
    assert x.grad[::5].abs().max() == 0  # ignored rows: no gradient
    torch.testing.assert_close(x.detach(), logits)  # the logits are read, never changed


def test_bf16_logits_give_float32_arithmetic_and_a_bf16_gradient():
    logits, targets = _case(N=64, V=300, seed=1)
    low = logits.bfloat16()
    expected_loss, expected_grad = _torch(low, targets)  # float32 arithmetic on the same bf16 values
    x = low.clone().requires_grad_()
    loss = cross_entropy_sum(x, targets)
    loss.backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(x.grad.float(), expected_grad, rtol=1e-2, atol=1e-3)  # bf16 rounding of it


def test_under_no_grad_only_the_loss_is_made():
    logits, targets = _case()
    with torch.no_grad():
        loss = cross_entropy_sum(logits, targets)
    torch.testing.assert_close(loss, _torch(logits, targets)[0], rtol=1e-6, atol=1e-5)
    assert not loss.requires_grad


def test_all_targets_ignored_gives_zero_loss_and_zero_gradient():
    logits, _ = _case(N=4)
    x = logits.clone().requires_grad_()
    loss = cross_entropy_sum(x, torch.full((4,), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0 and x.grad.abs().max() == 0


def test_mismatched_shapes_are_refused_with_the_fix():
    logits, targets = _case()
    with pytest.raises(ValueError, match="flatten the batch and time"):
        cross_entropy_sum(logits.view(1, 37, 50), targets)
