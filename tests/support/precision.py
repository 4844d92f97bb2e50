"""What precision a model pass really ran at, seen from inside every module's forward."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def forward_precisions() -> Iterator[set[torch.dtype]]:
    """The dtypes the forwards inside the block ran at: the CPU autocast dtype where autocast was on, else float32.
    A global forward hook, so it sees every module of every model, however the code under test reaches them."""
    seen: set[torch.dtype] = set()

    def record(module, args, output) -> None:
        seen.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        yield seen
    finally:
        hook.remove()
