"""The command line end to end on a made-up source cache: real DVC, real Great Expectations, real MLflow on
a temporary SQLite store, real tokenizer training. No network."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignops.cli import app
from alignops.data import sources, versioning

runner = CliRunner()


def cli(*args: str, cache: Path | None = None) -> tuple[int, str]:
    extra = []
    if cache is not None:
        # Fixture-sized data: larger val/test shares so every split holds a few records.
        extra = [
            "-p",
            "tiny",
            "--set",
            f"data.cache_dir={cache}",
            "--set",
            "data.val_fraction=0.25",
            "--set",
            "data.test_fraction=0.25",
            "--set",
            "tokenizer.vocab_size=300",
        ]
    result = runner.invoke(app, [*args, *extra])
    return result.exit_code, result.output


def mlflow_runs():
    import mlflow

    from alignops import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); from alignops.cli import app; "
        "heavy = ('torch', 'mlflow', 'great_expectations', 'dvc', 'lightning', 'prefect'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "alignops.cli", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - start < 3  # < 1 s measured; generous for a loaded CI box


def test_data_build_validate_status_tokenizer(home: Path, dvc_repo: Path, source_cache: Path) -> None:
    code, out = cli("data", "build", cache=source_cache)
    assert code == 0, out
    version = versioning.data_version()
    assert version and version.endswith(".dir") and version in out
    for name in ("corpus", "sft", "rankings", "classification", "ner"):
        for split in ("train", "val", "test"):
            assert (dvc_repo / "data" / name / f"{split}.jsonl").stat().st_size > 0, (name, split)
    sheet = json.loads((dvc_repo / "data" / "datasheet.json").read_text())
    assert sheet["counts"]["rankings"]["train"] > 0 and "human_agreement_ceiling" in sheet

    code, out = cli("data", "status")
    assert code == 0 and "matches" in out, out

    code, out = cli("data", "validate", cache=source_cache)
    assert code == 0, out
    assert (home / "gx-docs" / "index.html").is_file()

    code, out = cli("tokenizer", "train", cache=source_cache)
    assert code == 0, out
    assert (home / "tokenizer" / "tokenizer.json").is_file()

    runs = {r.info.run_name: r for r in mlflow_runs()}
    assert {"data-build", "data-validate", "tokenizer"} <= set(runs)
    build = runs["data-build"]
    assert build.data.tags["alignops.data_version"] == version
    assert build.data.tags["alignops.stage"] == "data-build"
    assert build.data.metrics["data/corpus_train"] == sheet["counts"]["corpus"]["train"]
    assert {d.dataset.name for d in build.inputs.dataset_inputs} >= {"corpus/train", "sft/test"}
    assert runs["tokenizer"].data.tags["alignops.tokenizer_hash"]
    assert runs["data-validate"].data.metrics["validation/success"] == 1.0


def test_rebuild_is_byte_identical(home: Path, dvc_repo: Path, source_cache: Path) -> None:
    assert cli("data", "build", cache=source_cache)[0] == 0
    first = versioning.data_version()
    shutil.rmtree(dvc_repo / "data")
    assert cli("data", "build", cache=source_cache)[0] == 0
    assert versioning.data_version() == first


def test_validate_reports_a_broken_dataset(home: Path, dvc_repo: Path, source_cache: Path) -> None:
    assert cli("data", "build", cache=source_cache)[0] == 0
    path = dvc_repo / "data" / "classification" / "val.jsonl"
    rows = path.read_text(encoding="utf-8").splitlines()
    rows[1] = json.dumps({**json.loads(rows[1]), "label": "meh"})
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    code, out = cli("data", "validate", cache=source_cache)
    assert code == 1
    assert "classification/val" in out and "label" in out and "expect_column_values_to_be_in_set" in out
    assert "meh" in out
    code, out = cli("data", "status")
    assert code == 1 and "differs" in out
    # A stage that reads data refuses it.
    code, out = cli("tokenizer", "train", cache=source_cache)
    assert code == 1 and "classification/val" in out


def test_push_and_pull_restore_the_version(home: Path, dvc_repo: Path, source_cache: Path) -> None:
    assert cli("data", "build", cache=source_cache)[0] == 0
    code, out = cli("data", "push")
    assert code == 0, out
    shutil.rmtree(dvc_repo / "data")
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    code, out = cli("data", "pull")
    assert code == 0, out
    assert cli("data", "status")[0] == 0
    assert (dvc_repo / "data" / "sft" / "train.jsonl").is_file()


def test_a_malformed_source_is_named_and_nothing_is_replaced(home: Path, dvc_repo: Path, source_cache: Path) -> None:
    assert cli("data", "build", cache=source_cache)[0] == 0
    before = {p: p.read_bytes() for p in (dvc_repo / "data").rglob("*.jsonl")}
    bad = source_cache / "alpaca-eval-0.6.6" / "example" / "outputs.json"
    bad.write_text('[{"instruction": "x", "output": "y", "dataset": "koala"},\n{"instruction": ', encoding="utf-8")
    sources.seal(source_cache / "alpaca-eval-0.6.6", sources.ALPACA_EVAL)  # as if the package shipped it so

    code, out = cli("data", "build", cache=source_cache)
    assert code == 2
    assert "outputs.json:2" in out and "Fix:" in out
    assert {p: p.read_bytes() for p in (dvc_repo / "data").rglob("*.jsonl")} == before
    assert not list(dvc_repo.glob(".data.tmp-*"))


def test_run_nests_stage_runs_under_one_pipeline_run(
    prefect_harness, home: Path, dvc_repo: Path, source_cache: Path
) -> None:
    code, out = cli("run", "--to", "tokenizer", cache=source_cache)  # the full chain: tests/flows
    assert code == 0, out
    runs = mlflow_runs()
    parents = [r for r in runs if r.data.tags.get("alignops.stage") == "pipeline"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == ["data-build", "data-validate", "tokenizer"]
    assert parents[0].data.tags["alignops.git_commit"] != ""
    assert "ran data, tokenizer" in out and "mlflow ui --backend-store-uri sqlite:" in out

    code, out = cli("run", "--to", "tokenizer", cache=source_cache)
    assert code == 0 and "ran nothing; reused from cache: data, tokenizer" in out, out
    code, out = cli("run", "--from", "ppo", "--to", "sft", cache=source_cache)
    assert code == 2 and "comes after" in out


@pytest.mark.parametrize("args", [["data", "build", "-p", "nope"], ["data", "build", "--set", "data.nope=1"]])
def test_bad_config_exits_2_with_the_reason(args: list[str]) -> None:
    code, out = cli(*args)
    assert code == 2 and "error:" in out
