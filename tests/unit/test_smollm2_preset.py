"""configs/smollm2.yaml: the real-model preset trains LoRA on every fine-tuning stage from the fetched base, with
short sequences; its commented GPU section is a valid set of overrides that turns that into full fine-tuning in
bf16."""

from __future__ import annotations

import re

from alignops.base_models import SMOLLM2, registered_name
from alignops.config import load_config, presets_dir

FINETUNING = ("sft", "classify", "reward", "dpo", "ppo")


def gpu_overrides() -> list[str]:
    """The `#   --set key=value` lines of the preset's GPU section."""
    text = (presets_dir() / "smollm2.yaml").read_text(encoding="utf-8")
    return re.findall(r"^#\s+--set (\S+)$", text, flags=re.MULTILINE)


def test_the_cpu_preset_adapts_the_fetched_base_with_lora() -> None:
    cfg = load_config("smollm2")
    base = f"models:/{registered_name(SMOLLM2.name)}/latest"
    assert cfg.sft.base_model == base and cfg.classify.base_model == base
    assert f"models:/{cfg.tracking.model_prefix}-base/latest" == base  # the prefix's own -base is that model
    assert all(getattr(cfg, stage).lora is not None for stage in FINETUNING)
    # SmolLM2's context is 8192 tokens: every sequence length is set short, none left to the model's default
    assert max(cfg.sft.max_len, cfg.reward.max_len, cfg.dpo.max_len, cfg.classify.max_len) <= 256
    assert cfg.trainer.precision == "auto"


def test_the_gpu_section_is_full_finetuning_in_bf16() -> None:
    overrides = gpu_overrides()
    assert len(overrides) >= len(FINETUNING) + 2, overrides
    cfg = load_config("smollm2", overrides)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert all(getattr(cfg, stage).lora is None for stage in FINETUNING)
