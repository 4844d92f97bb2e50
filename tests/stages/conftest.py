"""Stage tests share a built, validated dataset and a tokenizer made from the fixture sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignops.config import PipelineConfig, load_config
from alignops.stages import data, tokenizer


@pytest.fixture
def built(home: Path, dvc_repo: Path, source_cache: Path, tiny_overrides: list[str]) -> PipelineConfig:
    """A config whose data is built and validated and whose tokenizer is trained."""
    cfg = load_config("tiny", [f"data.cache_dir={source_cache}", *tiny_overrides])
    data.build(cfg)
    data.validate(cfg)
    tokenizer.run(cfg)
    return cfg
