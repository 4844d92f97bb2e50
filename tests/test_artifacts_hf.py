"""alignops.artifacts on a Hugging Face base: an in-memory model (with a reward or class head) saved as a plain HF
folder plus alignops.json, loaded back with the same outputs; a save that fails leaves no folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignops.artifacts import HEAD_FILE, HF_FORMAT, META_FILE, ModelMeta, load_model, model_format, save_model
from models.base import HFCausalLM
from models.gpt import GPT, GPTConfig
from models.heads import ClassificationHead, ScalarHead, last_token
from tests.support.hf_models import tiny_model, tiny_tokenizer


@pytest.mark.parametrize("kind", ["causal_lm", "reward", "classifier"])
def test_hf_model_round_trip(tmp_path: Path, kind: str) -> None:
    model = HFCausalLM(tiny_model("qwen2"))
    assert model_format(model) == HF_FORMAT
    assert model_format(GPT(GPTConfig(vocab_size=64, n_embd=32, n_head=4, n_layer=1))) != HF_FORMAT
    labels = ["negative", "positive"] if kind == "classifier" else None
    head = {"reward": ScalarHead(model.hidden_size), "classifier": ClassificationHead(model.hidden_size, 2)}.get(kind)
    meta = ModelMeta(kind=kind, stage="test", labels=labels, format=HF_FORMAT)
    folder = save_model(tmp_path / "model", model, tiny_tokenizer(), meta, head)
    assert (folder / META_FILE).is_file() and (folder / HEAD_FILE).is_file() == (head is not None)
    assert not (tmp_path / "model.tmp").exists()

    loaded = load_model(folder)
    assert loaded.meta == meta and loaded.tokenizer.eos_token == tiny_tokenizer().eos_token
    ids = torch.tensor([[5, 9, 12, 7]])
    with torch.no_grad():
        assert torch.allclose(loaded.gpt(ids), model(ids), atol=1e-6)
        if head is not None:
            mask = torch.ones_like(ids)
            head.eval(), loaded.head.eval()
            expected = head(last_token(model.hidden_states(ids, mask), mask))
            assert torch.allclose(loaded.head(last_token(loaded.gpt.hidden_states(ids, mask), mask)), expected)


def test_a_failed_save_leaves_the_old_folder_and_no_partial_one(tmp_path: Path) -> None:
    model = HFCausalLM(tiny_model("llama"))
    meta = ModelMeta(kind="causal_lm", stage="test", format=HF_FORMAT)
    folder = save_model(tmp_path / "model", model, tiny_tokenizer(), meta)
    before = sorted(p.name for p in folder.iterdir())

    class Broken:
        def save_pretrained(self, path: str) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(tmp_path / "model", model, Broken(), meta)
    assert sorted(p.name for p in folder.iterdir()) == before  # the published folder is untouched
    assert not (tmp_path / "model.tmp").exists()  # and the half-written one is gone
