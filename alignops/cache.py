"""Stage caching: a stage whose inputs are unchanged is skipped and its recorded outputs reused.

The cache key of a stage is the sha256 of
  - the stage name,
  - the code version: a digest of the platform's source (alignops/ and models/), so a code change re-runs,
    while a commit that touches only docs or tests does not,
  - the data version (the md5 in data.dvc; for data-build itself, nothing: its config and code decide it),
  - the config sections the stage reads (its own section, plus model shape, trainer and seed for training),
    which include the exact parent model versions: a flow writes them into the section (sft.base_model =
    models:/<prefix>-base/7), so a re-trained parent changes every key downstream of it, nothing upstream.

The cache lives in the tracking store itself: a finished stage run is tagged with its key and its outputs,
so the cache is shared by everyone using the same MLflow server and disappears with it. A hit is reused
only if its outputs still exist (the registered version, the tokenizer file, the data version on disk).
The feedback loop adds labels to the data without a rebuild; it records the new data version under the
data-build key, so the next pipeline run builds nothing and trains on the labels too.

    key = stage_key("sft", cfg)
    outputs = lookup(key)                   # None: run the stage, then record(run_id, key, outputs)
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from alignops.config import PipelineConfig, config_hash

DATA_BUILD = "data-build"  # the one stage whose key has no data version: it makes it

# What each cached stage reads from the config, besides the data version and the code.
SECTIONS: dict[str, tuple[str, ...]] = {
    DATA_BUILD: ("data",),
    "data-validate": ("data", "validation"),
    "tokenizer": ("data", "tokenizer"),
    "pretrain": ("pretrain", "model", "trainer", "tokenizer", "seed"),
    "sft": ("sft", "model", "trainer", "seed"),
    "reward": ("reward", "model", "trainer", "seed"),
    "ppo": ("ppo", "trainer", "seed"),
    "evaluate": ("evaluate", "seed"),
    "fewshot": ("fewshot", "evaluate", "seed"),  # the answer length and batch size come from evaluate
    "ner": ("ner", "model", "trainer", "seed"),
}


@cache
def code_version() -> str:
    """Digest of every Python source file of the platform (alignops/, models/): what decides results."""
    import alignops
    import models

    digest = hashlib.sha256()
    for package in (alignops, models):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def key_parts(stage: str, cfg: PipelineConfig) -> dict[str, Any]:
    """Everything the key is made of, readable (logged with the stage, so a miss can be explained)."""
    from alignops.data import versioning

    if stage not in SECTIONS:
        raise ValueError(f"Stage {stage!r} is not cached; cached stages are {sorted(SECTIONS)}.")
    sections = {}
    for name in SECTIONS[stage]:
        value = getattr(cfg, name)
        sections[name] = config_hash(value) if hasattr(value, "model_dump") else value
    return {
        "stage": stage,
        "code": code_version(),
        "data": None if stage == DATA_BUILD else versioning.data_version(),
        "sections": sections,
    }


def stage_key(stage: str, cfg: PipelineConfig) -> str:
    canonical = json.dumps(key_parts(stage, cfg), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def lookup(key: str) -> dict[str, Any] | None:
    """The outputs recorded by the newest finished run with this key (which names its stage), if they still
    exist."""
    from alignops import tracking

    for run_id, outputs in tracking.cached_runs(key):
        if _still_there(outputs):
            return {**outputs, "run_id": run_id}
    return None


def record(run_id: str, key: str, outputs: dict[str, Any]) -> None:
    """Tag a finished stage run with its key and outputs, so the next identical run can reuse them."""
    from alignops import tracking

    tracking.set_run_tags(run_id, {tracking.CACHE_KEY_TAG: key, tracking.OUTPUTS_TAG: json.dumps(outputs)})


def _still_there(outputs: dict[str, Any]) -> bool:
    from alignops import tracking
    from alignops.data import versioning

    for name, value in outputs.items():
        if isinstance(value, str) and value.startswith("models:/") and not tracking.model_version_exists(value):
            return False
        if name == "tokenizer" and not _same_file(Path(value), outputs.get("tokenizer_sha256")):
            return False
        if name == "data_version" and (value != versioning.data_version() or not versioning.status().workspace_matches):
            return False
    return True


def _same_file(path: Path, sha256: str | None) -> bool:
    return path.is_file() and sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
