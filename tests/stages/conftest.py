"""Stage tests share a built, validated dataset and a tokenizer made from the fixture sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignops.config import PipelineConfig, load_config
from alignops.stages import data, tokenizer

# Fixture-sized data and a very small model: each stage trains in seconds on 2 cores.
TINY = [
    "data.val_fraction=0.25",
    "data.test_fraction=0.25",
    "tokenizer.vocab_size=300",
    "model.n_embd=32",
    "trainer.log_every_n_steps=1",
    "pretrain.max_steps=40",
    "pretrain.lr=0.005",
    "pretrain.val_every_n_steps=20",
    "sft.max_steps=20",
    "sft.lr=0.003",
    "sft.val_every_n_steps=10",
    "classify.max_steps=20",
    "classify.lr=0.003",
    "classify.val_every_n_steps=10",
    "reward.max_steps=20",
    "reward.lr=0.003",
    "reward.val_every_n_steps=10",
    "dpo.max_steps=10",
    "dpo.val_every_n_steps=10",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def built(home: Path, dvc_repo: Path, source_cache: Path) -> PipelineConfig:
    """A config whose data is built and validated and whose tokenizer is trained."""
    cfg = load_config("tiny", [f"data.cache_dir={source_cache}", *TINY])
    data.build(cfg)
    data.validate(cfg)
    tokenizer.run(cfg)
    return cfg
