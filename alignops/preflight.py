"""Checks of a config against this machine, made before any data or model work: the devices the trainer asks
for exist. (What the config alone can decide is checked by its pydantic models in config.py.)"""

from __future__ import annotations

from alignops.config import PipelineConfig
from alignops.errors import ConfigError

GPU_NAMES = ("gpu", "cuda")


def check_trainer(cfg: PipelineConfig) -> None:
    """ConfigError when trainer.accelerator names a device this machine does not have, or more of them."""
    accelerator = cfg.trainer.accelerator
    if accelerator not in (*GPU_NAMES, "mps"):
        return  # auto and cpu run anywhere
    import torch

    available = int(torch.backends.mps.is_available()) if accelerator == "mps" else torch.cuda.device_count()
    wanted = cfg.trainer.devices
    if available == 0:
        raise ConfigError(
            f"trainer.accelerator: {accelerator!r}, but this machine has no such device. Use --set "
            "trainer.accelerator=auto (a GPU when there is one, else the CPU) or cpu."
        )
    if isinstance(wanted, int) and wanted > available:
        raise ConfigError(
            f"trainer.devices: {wanted}, but this machine has {available} {accelerator} device(s). Use --set "
            f"trainer.devices={available} or auto."
        )
