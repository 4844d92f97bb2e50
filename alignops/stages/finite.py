"""The last check before a model is registered: every weight and every loss its run logged is a finite number.

A NaN or infinite model would otherwise be registered, become `latest` and be picked up by the next stage; the
error names the stage, the tensor or metric and its value, and the likely fix.
"""

from __future__ import annotations

import math
from typing import Any

from alignops.errors import ModelError

_FIX = (
    "Nothing was registered. Lower the stage's lr (or set its grad_clip), check the data, and run the stage again; "
    "the failed MLflow run keeps the loss curve."
)


def require_finite(stage: str, modules: dict[str, Any], metrics: dict[str, float]) -> None:
    """Raise ModelError when a parameter of `modules` (name -> torch module or None) or a loss metric of the run
    (`metrics`, name -> latest value) is NaN or infinite."""
    import torch

    for owner, module in modules.items():
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            if not isinstance(tensor, torch.Tensor) or not torch.is_floating_point(tensor):
                continue  # int8 packed state holds dtypes and integer tensors
            if not bool(torch.isfinite(tensor).all()):
                bad = tensor[~torch.isfinite(tensor)].flatten()[0].item()
                raise ModelError(f"{stage}: the trained {owner}'s weight {name} holds {bad}. {_FIX}")
    for key, value in sorted(metrics.items()):
        if "loss" in key and not math.isfinite(value):  # losses only: other metrics may be nan by definition
            raise ModelError(f"{stage}: the run's final {key} is {value}. {_FIX}")
