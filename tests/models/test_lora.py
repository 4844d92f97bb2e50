"""models.lora: adapters on the project's GPT and on tiny transformers models; only adapters train, every one moves,
merged weights give the adapter's logits, and the merged folder loads without peft."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alignops.config import LoraConfig
from models.base import HFCausalLM
from models.gpt import GPT, GPTConfig
from models.lora import ADAPTER_PREFIX, adapters_off, apply_lora, count_parameters, has_lora, merge_lora
from tests.support.hf_models import SHAPES, VOCAB, tiny_model

KINDS = ("gpt", *SHAPES)


def _model(kind: str) -> torch.nn.Module:
    if kind == "gpt":
        torch.manual_seed(0)
        return GPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    return HFCausalLM(tiny_model(kind))


def _train(model: torch.nn.Module, steps: int = 3) -> None:
    """A few AdamW steps of next-token loss on random ids (dropout off: the logits compare exactly after)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (2, 12), generator=g)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("kind", KINDS)
def test_only_adapters_train_and_merged_logits_equal_adapter(kind: str) -> None:
    model = _model(kind)
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}

    apply_lora(model, LoraConfig(r=4, alpha=8))
    trainable, total = count_parameters(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(ADAPTER_PREFIX in n for n in names), names
    assert 0 < trainable < total / 2
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    _train(model)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, start[n]), f"adapter {n} did not move"
        else:
            assert torch.equal(p, frozen[n.replace(".base_layer", "")]), f"frozen {n} moved"
    with torch.no_grad():
        adapted = model(ids)
    assert not torch.allclose(adapted, before, atol=1e-4)  # the adapters changed the model

    merge_lora(model)
    assert not has_lora(model) and not hasattr(getattr(model, "model", model), "peft_config")
    assert all(p.requires_grad for p in model.parameters())
    assert count_parameters(model)[1] == total - trainable  # the adapters are gone, the base's size is back
    with torch.no_grad():
        merged = model(ids)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ("gpt", "llama"))
def test_adapters_off_gives_the_base_and_puts_the_adapters_back(kind: str) -> None:
    """Inside adapters_off a trained LoRA model computes its base's logits exactly; after it, its own again."""
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))
    base = _model(kind)
    with torch.no_grad():
        expected_base = base(ids)
    model = apply_lora(base, LoraConfig(r=2, alpha=4))
    _train(model)
    with torch.no_grad():
        adapted = model(ids)
        with adapters_off(model):
            off = model(ids)
        again = model(ids)
    assert torch.equal(off, expected_base) and not torch.allclose(adapted, expected_base)
    assert torch.equal(again, adapted)
    assert all(p.requires_grad for n, p in model.named_parameters() if ADAPTER_PREFIX in n)
    with pytest.raises(ValueError, match="no LoRA layers"), adapters_off(_model(kind)):
        pass
    for layer in (m for m in model.modules() if hasattr(m, "merge") and hasattr(m, "merged")):
        layer.merge()
    with pytest.raises(ValueError, match="merged"), adapters_off(model):
        pass


def test_targets_are_checked() -> None:
    with pytest.raises(ValueError, match="Layer names in this GPT.*c_attn"):
        apply_lora(_model("gpt"), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="lm_head"):
        apply_lora(_model("llama"), LoraConfig(target_modules=["lm_head", "q_proj"]))
    model = apply_lora(_model("llama"), LoraConfig(target_modules=["q_proj", "v_proj"]))
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ADAPTER_PREFIX in n}
    assert adapted == {"q_proj", "v_proj"}


# Loads the merged folders in a fresh interpreter where `import peft` fails, and writes their logits.
_LOAD_WITHOUT_PEFT = """
import json, sys
sys.modules["peft"] = None  # import peft raises ImportError; transformers sees it as not installed
import torch
from models.base import HFCausalLM
from models.gpt import GPT
ids = torch.tensor(json.loads(sys.argv[1]))
out = {}
with torch.no_grad():
    out["llama"] = HFCausalLM.from_folder(sys.argv[2]).eval()(ids).tolist()
    out["gpt"] = GPT.from_hf(sys.argv[3]).eval()(ids).tolist()
    out["gpt_as_hf"] = HFCausalLM.from_folder(sys.argv[3]).eval()(ids).tolist()
out["peft_loaded"] = any(name.startswith("peft.") for name in sys.modules)
print(json.dumps(out))
"""


def test_merged_folder_loads_without_peft(tmp_path: Path) -> None:
    ids = torch.randint(0, VOCAB, (1, 8), generator=torch.Generator().manual_seed(2))
    expected = {}
    for kind in ("llama", "gpt"):
        model = apply_lora(_model(kind), LoraConfig(r=2, alpha=4))
        _train(model, steps=2)
        merge_lora(model).eval()
        with torch.no_grad():
            expected[kind] = model(ids)
        model.save(tmp_path / kind)
    files = sorted(p.name for p in (tmp_path / "llama").iterdir())
    assert not any("adapter" in f for f in files), files  # a plain folder, no adapter_config/adapter_model
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_PEFT, json.dumps(ids.tolist()), str(tmp_path / "llama"),
         str(tmp_path / "gpt")],
        capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1",
                                                       "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["peft_loaded"] is False
    torch.testing.assert_close(torch.tensor(loaded["llama"]), expected["llama"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(loaded["gpt"]), expected["gpt"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(loaded["gpt_as_hf"]), expected["gpt"], atol=1e-4, rtol=1e-4)
