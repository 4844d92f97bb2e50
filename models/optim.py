"""The one place an optimizer and its learning-rate schedule are built, for every training module.

    optim = OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, schedule="linear", warmup_steps=10)  # alignops.config
    optimizer, scheduler = build(module, optim, max_steps=1000)
    lr_multiplier("cosine", step, warmup_steps=10, max_steps=1000, min_lr_ratio=0.1)
    add_penalty_gradients(module, l1=1e-5, l2=0.0)        # after backward, before the step: L1/L2 on the loss

`optim` is an alignops.config.OptimConfig or the dict of its fields (what a module saves in its hyperparameters,
so a checkpoint rebuilds the same optimizer); this module reads its fields and imports nothing else of alignops.

Weight decay and the L1/L2 penalties apply to matrices (linear weights, embeddings), never to biases or LayerNorm
gains (nanoGPT); told apart by the module that owns a parameter, not by p.dim(), since under FSDP parameters are
flat 1-D shards. AdamW decays decoupled from the gradient; Adam, SGD and Adagrad add weight_decay * w to it (their
torch meaning). l1 and l2 are penalties l1 * sum|w| + l2 * sum w^2 added to the training loss: their gradient is
added to the parameters' gradients once per optimizer step, after gradient accumulation.

Adam and AdamW run fused (one kernel over all parameters, torch's `fused=True`) where the parameters are fp32/bf16 on
a CPU or CUDA device: on CPU a step of a 10M-parameter GPT (76 tensors) takes 12 ms against 35-40 ms for torch's
default (a loop over the parameters; foreach is no faster there). Not under fp16 mixed precision
(`gradients_scaled`): a fused step would unscale the GradScaler's gradients itself, after Lightning had clipped them
still scaled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn as nn

OPTIMIZERS = ("adamw", "adam", "sgd", "adagrad")
SCHEDULES = ("cosine", "linear", "constant")


def settings(optim: Any) -> dict[str, Any]:
    """The optimizer settings as a plain dict: from an OptimConfig, its dict, or None (the OptimConfig defaults)."""
    if optim is None:
        from alignops.config import OptimConfig  # the one home of the defaults

        optim = OptimConfig()
    values = dict(optim)  # a pydantic model iterates as (field, value) pairs
    if values.get("optimizer") not in OPTIMIZERS or values.get("schedule") not in SCHEDULES:
        raise ValueError(
            f"optimizer must be one of {OPTIMIZERS} and schedule one of {SCHEDULES}, got "
            f"{values.get('optimizer')!r} and {values.get('schedule')!r}"
        )
    return values


def check_schedule(optim: Mapping[str, Any], max_steps: int) -> None:
    lr, warmup_steps, min_lr_ratio = optim["lr"], optim["warmup_steps"], optim["min_lr_ratio"]
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0 <= warmup_steps < max_steps:
        raise ValueError(f"need 0 <= warmup_steps < max_steps, got warmup_steps={warmup_steps}, max_steps={max_steps}")
    if not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")


def lr_multiplier(schedule: str, step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based): linear warm-up over warmup_steps, then
    cosine (nanoGPT) or linear decay from 1 to min_lr_ratio at max_steps, or constant 1; min_lr_ratio after
    max_steps for the decaying schedules."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    if step >= max_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    if schedule == "linear":
        return 1.0 - progress * (1.0 - min_lr_ratio)
    return min_lr_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_lr_ratio)


def penalised(module: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters that weight decay and L1/L2 apply to: all but biases and LayerNorm gains."""
    exempt = {
        id(p)
        for owner in module.modules()
        for name, p in owner.named_parameters(recurse=False)
        if name == "bias" or isinstance(owner, nn.LayerNorm)
    }
    return [p for p in module.parameters() if p.requires_grad and id(p) not in exempt]


FUSED_DEVICES = ("cpu", "cuda")


def gradients_scaled(module: nn.Module) -> bool:
    """Whether the Trainer or Fabric that runs `module` scales its gradients (fp16 mixed precision's GradScaler).
    False for a module attached to neither (a bare call, or before Fabric's setup)."""
    trainer, fabric = getattr(module, "_trainer", None), getattr(module, "_fabric", None)
    plugin = trainer.precision_plugin if trainer is not None else getattr(fabric, "_precision", None)
    return getattr(plugin, "scaler", None) is not None


def build(
    module: nn.Module, optim: Any, max_steps: int, fused: bool = True
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The configured optimizer over module's trainable parameters (two groups: decayed matrices, the rest) and its
    per-step schedule. fused: Adam/AdamW's fused step where every parameter allows it (module docstring)."""
    o = settings(optim)
    check_schedule(o, max_steps)
    decayed = {id(p) for p in penalised(module)}
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": o["weight_decay"]},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
    lr, betas = o["lr"], (o["beta1"], o["beta2"])
    fused = fused and all(p.device.type in FUSED_DEVICES and p.dtype in (torch.float32, torch.bfloat16) for p in params)
    if o["optimizer"] == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)
    elif o["optimizer"] == "adam":
        optimizer = torch.optim.Adam(groups, lr=lr, betas=betas, fused=fused or None)
    elif o["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=o["momentum"])
    else:
        optimizer = torch.optim.Adagrad(groups, lr=lr)
    if optimizer.defaults.get("fused"):
        # The flag tells a GradScaler that the step unscales gradients itself. No scaler runs here (fused is off when
        # gradients are scaled), but Lightning's bf16-mixed plugin reads the flag as "cannot clip" and refuses.
        optimizer._step_supports_amp_scaling = False
    schedule = partial(lr_multiplier, o["schedule"], warmup_steps=o["warmup_steps"], max_steps=max_steps,
                       min_lr_ratio=o["min_lr_ratio"])  # fmt: skip
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def add_penalty_gradients(module: nn.Module, l1: float, l2: float) -> float:
    """Add the gradient of l1 * sum|w| + l2 * sum w^2 over the penalised parameters to their gradients; returns the
    penalty's value (for logging). A no-op returning 0 when both are 0."""
    if not l1 and not l2:
        return 0.0
    penalty = 0.0
    with torch.no_grad():
        for p in penalised(module):
            if p.grad is None:
                continue
            p.grad.add_(l1 * torch.sign(p) + 2.0 * l2 * p)
            penalty += float(l1 * p.abs().sum() + l2 * p.pow(2).sum())
    return penalty
