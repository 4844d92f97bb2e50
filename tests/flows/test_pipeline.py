"""The pipeline flow under a real (test) Prefect server, on the made-up source cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.pipeline import is_transient, pipeline


def test_transient_errors_are_retried_and_bad_input_is_not() -> None:
    from alignops.config import ConfigError
    from alignops.data.sources import SourceError

    assert is_transient(ConnectionError("tracking server unreachable"))
    wrapped = RuntimeError("mlflow call failed")
    wrapped.__cause__ = TimeoutError()
    assert is_transient(wrapped)
    assert not is_transient(ConfigError("bad preset"))
    assert not is_transient(SourceError(Path("x.json"), 3, "not JSON", "fix it"))


def test_pipeline_flow_runs_every_stage_nested(
    prefect_harness, home: Path, dvc_repo: Path, source_cache: Path, tiny_overrides: list[str]
) -> None:
    import mlflow

    from alignops import tracking

    result = pipeline("tiny", [f"data.cache_dir={source_cache}", *tiny_overrides])
    assert result["data_version"].endswith(".dir")
    assert Path(result["tokenizer"]).is_file()
    assert (result["base"], result["sft"], result["reward"], result["policy"]) == (
        "models:/alignops-base/1", "models:/alignops-sft/1", "models:/alignops-reward/1", "models:/alignops-policy/1"
    )  # fmt: skip

    mlflow.set_tracking_uri(tracking.tracking_uri())
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result["parent_run_id"]]
    assert sorted(r.info.run_name for r in children) == sorted(
        ["data-build", "data-validate", "tokenizer", "pretrain", "sft", "reward", "ppo"]
    )
    assert all(r.info.status == "FINISHED" for r in children)
    # each stage was handed the exact version made upstream in this run
    client = mlflow.MlflowClient(tracking.tracking_uri())
    policy = client.get_model_version("alignops-policy", "1")
    assert policy.tags["alignops.parent_model"] == result["sft"]
    assert policy.tags["alignops.reward_model"] == result["reward"]


def test_pipeline_stops_where_asked(prefect_harness, home: Path, dvc_repo: Path, source_cache: Path) -> None:
    overrides = [f"data.cache_dir={source_cache}", "data.val_fraction=0.25", "data.test_fraction=0.25"]
    result = pipeline("tiny", overrides, to="data")
    assert set(result) == {"parent_run_id", "data_version"}
    with pytest.raises(ValueError, match="Unknown stage"):
        pipeline("tiny", overrides, to="nope")


def test_a_failing_stage_fails_the_flow_and_its_run(
    prefect_harness, home: Path, dvc_repo: Path, source_cache: Path
) -> None:
    from alignops.data.validation import DataValidationError

    overrides = [f"data.cache_dir={source_cache}", "validation.max_text_chars=5"]  # every corpus text too long
    with pytest.raises(DataValidationError, match="corpus"):
        pipeline("tiny", overrides)
