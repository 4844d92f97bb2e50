"""Cross-entropy over a large vocabulary whose gradient is made in the forward, a chunk of rows at a time.

    loss_sum = cross_entropy_sum(logits.flatten(0, 1), targets.flatten())    # logits in any float dtype

`F.cross_entropy` on bf16 logits (autocast) copies the (N, V) logits to float32, keeps their log-softmax for the
backward, and in the backward fills an (N, V) zero gradient, scatters into it, runs the log-softmax backward and
casts the result back to bf16: five passes over a matrix that at the small preset is 2,048 x 8,192. Here each chunk
of rows is cast to float32, its loss taken and turned into the gradient (softmax minus one-hot) while it is in
cache, and only that gradient is kept, in the logits' dtype (what autocast's backward would hand the lm_head in
any case); the backward scales it. The approach of Liger-Kernel's fused cross-entropy, in plain PyTorch ops, on
CPU (other devices keep F.cross_entropy: unmeasured there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

IGNORE_INDEX = -100  # a target cross-entropy skips (torch's default ignore_index)
# float32 elements of one chunk (4 MiB): 128 rows of the small preset's 8,192 words, 21 of SmolLM2's 49,152.
# Measured on 2 cores: 0.5-2 M elements ran fastest at both widths (the chunk stays in cache), 8 M and more slower.
CHUNK_ELEMENTS = 2**20


def cross_entropy_sum(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """The float32 sum over the rows whose target is not ignore_index of -log softmax(logits)[target]: what
    F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="sum") gives, and its gradient,
    in float32 arithmetic. logits (N, V), targets (N,)."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy_sum takes logits (N, V) and targets (N,), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}: flatten the batch and time dimensions first"
        )
    if logits.device.type != "cpu":
        # measured on CPU only; on a GPU a chunk loop is many small kernel launches where torch's own kernel is one
        return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="sum")
    return _CrossEntropySum.apply(logits, targets, ignore_index)


class _CrossEntropySum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
        N, V = logits.shape
        with_grad = ctx.needs_input_grad[0]
        grad = torch.empty_like(logits) if with_grad else None
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        rows = max(1, CHUNK_ELEMENTS // max(V, 1))
        keeps = targets != ignore_index
        indices = torch.where(keeps, targets, 0).unsqueeze(1)  # an ignored row reads column 0, then counts 0
        for start in range(0, N, rows):
            stop = min(start + rows, N)
            keep, index = keeps[start:stop], indices[start:stop]
            # one exp pass: x - max, then exp; the loss is log(sum) - (x - max)[target], the gradient the
            # softmax minus the one-hot target, both zero on an ignored row
            x = logits[start:stop].to(torch.float32, copy=True)  # a copy also of float32 logits: x changes in place
            x.sub_(x.amax(dim=1, keepdim=True))
            at_target = x.gather(1, index).squeeze(1)
            sums = x.exp_().sum(dim=1)
            total += ((sums.log() - at_target) * keep).sum()
            if with_grad:
                x.mul_((keep / sums).unsqueeze(1)).scatter_add_(1, index, -keep.to(x.dtype).unsqueeze(1))
                grad[start:stop] = x
        if with_grad:
            ctx.save_for_backward(grad)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        # in place: the gradient was made for this one backward (once_differentiable), nothing else holds it
        return grad.mul_(grad_output.to(grad.dtype)), None, None
