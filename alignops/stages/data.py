"""Data stages: build the datasets and version them with DVC; validate them with Great Expectations.

result = build(load_config("tiny"))      # data/ + data.dvc + an MLflow run with counts and datasheet
report = validate(load_config("tiny"))   # raises DataValidationError when a suite fails
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops import settings, tracking
from alignops.config import PipelineConfig
from alignops.data import datasets, imports, versioning


@dataclass(frozen=True)
class DataBuildResult:
    data_version: str
    counts: dict[str, dict[str, int]]
    seconds: float
    run_id: str


@dataclass(frozen=True)
class DataValidationResult:
    success: bool
    report: dict[str, Any]
    docs_index: Path | None
    run_id: str


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def build(
    cfg: PipelineConfig, progress: Callable[[str], None] = lambda _msg: None, parent_run_id: str | None = None
) -> DataBuildResult:
    cache_dir = cfg.data.cache_dir or settings.home() / "cache"
    with tracking.stage_run("data-build", cfg, cfg.data, parent_run_id) as run, tempfile.TemporaryDirectory() as tmp:
        kept = cfg.data.data_dir / imports.IMPORTS_DIR  # the build replaces data/: keep the imports to replay
        if cfg.data.replay_imports and kept.is_dir():
            shutil.copytree(kept, Path(tmp) / imports.IMPORTS_DIR)
        result = datasets.build_datasets(cfg.data, cache_dir, progress)
        if cfg.data.replay_imports and (Path(tmp) / imports.IMPORTS_DIR).is_dir():
            progress("re-applying the imports of data/imports/manifest.json")
            replayed = imports.replay(cfg, Path(tmp) / imports.IMPORTS_DIR)
            result.counts.update(json.loads((cfg.data.data_dir / "datasheet.json").read_text("utf-8"))["counts"])
            run.log_metrics({"data/imports": len(replayed)})
        progress("recording the version with DVC")
        version = versioning.track(cfg.data.data_dir)
        run.set_tags({tracking.DATA_VERSION_TAG: version})
        run.log_metrics(
            {f"data/{name}_{split}": n for name, splits in result.counts.items() for split, n in splits.items()}
            | {"data/build_seconds": result.seconds}
        )
        run.log_artifact(cfg.data.data_dir / "datasheet.md", "datasheet")
        run.log_artifact(cfg.data.data_dir / "datasheet.json", "datasheet")
        run.log_datasets({name: (path, _md5(path)) for name, path in result.files.items()}, context="build")
        return DataBuildResult(version, result.counts, result.seconds, run.run_id)


def bounds(cfg: PipelineConfig):
    from alignops.data.validation import ValidationBounds

    v = cfg.validation
    return ValidationBounds(
        max_duplicate_rate=v.max_duplicate_rate,
        max_text_chars=v.max_text_chars,
        max_prompt_chars=v.max_prompt_chars,
        max_response_chars=v.max_response_chars,
    )


def validate(cfg: PipelineConfig, parent_run_id: str | None = None) -> DataValidationResult:
    """Run every suite; log the report to MLflow; raise DataValidationError (run marked failed) on failure."""
    from alignops.data.validation import DataValidationError, validate_dataset

    docs_dir = cfg.validation.docs_dir or settings.home() / "gx-docs"
    with tracking.stage_run("data-validate", cfg, cfg.validation, parent_run_id) as run:
        report = validate_dataset(cfg.data.data_dir, bounds(cfg), docs_dir=docs_dir)
        summary = report.to_dict()
        failed = sum(len(r.failures) for r in report.results)
        run.log_metrics({"validation/success": float(report.success), "validation/failed_expectations": failed})
        run.log_dict(summary, "validation/report.json")
        run.log_text(report.format(), "validation/report.txt")
        if not report.success:
            raise DataValidationError(report.format())
        index = docs_dir / "index.html"
        return DataValidationResult(report.success, summary, index if index.exists() else None, run.run_id)


def require_valid(cfg: PipelineConfig) -> None:
    """What every stage that reads data calls first: refuse data that fails its suites."""
    from alignops.data.validation import require_valid as _require_valid

    _require_valid(cfg.data.data_dir, bounds(cfg))
