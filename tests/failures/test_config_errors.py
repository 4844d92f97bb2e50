"""Bad configs are refused before any data or model work: one message naming the field and the fix, exit 2,
no traceback (the config part of the bad-input corpus)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from alignops.cli import app
from alignops.config import ConfigError, load_config

# (override, words the message must contain)
BAD_OVERRIDES = [
    ("pretrain.lr=.inf", ["pretrain.lr", "finite"]),
    ("ppo.lr=.nan", ["ppo.lr", "finite"]),
    ("data.val_fraction=-.inf", ["data.val_fraction"]),
    ("reward.margin=.inf", ["reward.margin", "finite"]),
    ("model.n_head=5", ["n_head 5 does not divide n_embd", "choose n_head among"]),
    ("trainer.accelerator=tpu", ["accelerator 'tpu'", "cpu"]),
    ("trainer.precision=fp8", ["precision 'fp8'", "bf16-mixed"]),
    ("x=[1,", ["not valid YAML", "--set"]),
    ("pretrain.lr", ["not KEY=VALUE"]),
]


@pytest.mark.parametrize(("override", "words"), BAD_OVERRIDES)
def test_bad_override_is_one_message(override: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("tiny", [override])
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(("override", "words"), BAD_OVERRIDES[:1] + BAD_OVERRIDES[4:8])
def test_cli_exits_2_without_traceback(override: str, words: list[str]) -> None:
    result = CliRunner().invoke(app, ["config", "show", "-p", "tiny", "--set", override])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") and words[0] in result.output


def test_pipeline_refuses_unknown_stages_first(home) -> None:
    """--from/--to are checked before anything runs (no data build, no MLflow run)."""
    result = CliRunner().invoke(app, ["run", "-p", "tiny", "--from", "sft", "--to", "pretrain"])
    assert result.exit_code == 2, result.output
    assert "--from sft comes after --to pretrain" in result.output
    assert not (home / "mlflow.db").exists()


def test_broken_model_metadata_names_file_and_line(tmp_path) -> None:
    from alignops.artifacts import META_FILE, load_model
    from alignops.errors import ModelError

    (tmp_path / META_FILE).write_text('{\n "kind": "causal_lm",\n "stage": \n}\n', encoding="utf-8")
    with pytest.raises(ModelError, match=rf"{META_FILE}:4: not valid JSON .*re-run its stage"):
        load_model(tmp_path)
    (tmp_path / META_FILE).write_text('{"kind": "causal_lm", "colour": "red"}', encoding="utf-8")
    with pytest.raises(ModelError, match="colour"):
        load_model(tmp_path)


def test_serving_an_unknown_model_speaks(home) -> None:
    result = CliRunner().invoke(app, ["serve", "--model", "models:/nothing-here/1"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "nothing-here" in result.output and "MLflow" in result.output


def test_a_gpu_this_machine_lacks_is_refused_before_any_work(home) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal needs one without")
    result = CliRunner().invoke(app, ["pretrain", "-p", "tiny", "--set", "trainer.accelerator=gpu"])
    assert result.exit_code == 2, result.output
    assert "trainer.accelerator: 'gpu', but this machine has no such device" in result.output
    assert not (home / "mlflow.db").exists() and not (home / "stages").exists()
