"""Every fine-tuning stage on a Hugging Face base: a tiny random Llama (tests/support/hf_models.py) imported as
<prefix>-base, then SFT (LoRA) -> reward -> PPO (LoRA), DPO (LoRA) and classify, through the real stages with real
Lightning and a real MLflow store. Each registers a version whose folder is a plain Hugging Face folder (LoRA
merged) that transformers loads without alignops and that generates. The Qwen2 shape and the GPT-2 shape (Conv1D
layers; its tokenizer without a chat template, so the project's template with the tokenizer's EOS) run the same
chain in the slow tier."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch

from alignops import tracking
from alignops.artifacts import HF_FORMAT, META_FILE, load_model
from alignops.base_models import import_base
from alignops.config import PipelineConfig, load_config
from alignops.inference import Generator, decoding
from alignops.stages import classify, dpo, ppo, reward, sft
from tests.support.hf_models import CHAT_TEMPLATE, save_folder, tiny_model, tiny_tokenizer

PREFIX = "tinyllama"
LORA = "{r: 4, alpha: 8}"
# what this test proves is that each stage runs and publishes on the base, not how well it learns: few steps
FEW_STEPS = [
    f"{stage}.{key}={value}"
    for stage in ("sft", "reward", "dpo", "classify")
    for key, value in (("max_steps", 6), ("val_every_n_steps", 6), ("warmup_steps", 2))
]
FEW_STEPS += ["ppo.iterations=2", "ppo.eval_samples=2"]


SHAPES = ["llama", pytest.param("qwen2", marks=pytest.mark.slow), pytest.param("gpt2", marks=pytest.mark.slow)]


@pytest.fixture(params=SHAPES)
def llama_cfg(
    request: pytest.FixtureRequest, built: PipelineConfig, tiny_overrides: list[str], tmp_path: Path
) -> PipelineConfig:
    """The built fixture data, with a tiny random model of the shape registered as <PREFIX>-base and LoRA on SFT,
    DPO and PPO."""
    tokenizer = tiny_tokenizer(chat_template=None if request.param == "gpt2" else CHAT_TEMPLATE)
    import_base(save_folder(tiny_model(request.param), tmp_path / "tiny", tokenizer), name=PREFIX)
    overrides = [f"data.cache_dir={built.data.cache_dir}", *tiny_overrides, f"tracking.model_prefix={PREFIX}",
                 f"sft.lora={LORA}", f"dpo.lora={LORA}", f"ppo.lora={LORA}", "ppo.lr=1e-3", *FEW_STEPS]  # fmt: skip
    return load_config("tiny", overrides)


def _plain_hf(folder: Path) -> torch.nn.Module:
    """The published folder as transformers alone loads it: a plain causal LM, no adapter left in it."""
    from transformers import AutoModelForCausalLM

    assert json.loads((folder / META_FILE).read_text())["format"] == HF_FORMAT
    assert not list(folder.glob("adapter_*")), "an adapter file was published beside the merged weights"
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    assert not [name for name, _ in model.named_parameters() if "lora" in name]
    return model


def _generates(folder: Path) -> None:
    out = Generator.from_dir(folder).complete(["What is the capital of France?"], decoding("greedy", max_new_tokens=4))
    assert len(out) == 1 and isinstance(out[0], str)


def test_every_stage_on_an_imported_base(llama_cfg: PipelineConfig) -> None:
    client = mlflow.MlflowClient(tracking.tracking_uri())
    base_dir = tracking.resolve_model(f"models:/{PREFIX}-base/1")
    base = _plain_hf(base_dir).state_dict()

    tuned = sft.run(llama_cfg)
    assert tuned.model_uri == f"models:/{PREFIX}-sft/1"
    assert client.get_model_version(f"{PREFIX}-sft", "1").tags["alignops.parent_model"] == f"models:/{PREFIX}-base/1"
    run = client.get_run(tuned.run_id).data.metrics
    assert 0 < run["model/trainable_params"] < 0.5 * run["model/params"]  # LoRA: the adapters alone train
    merged = _plain_hf(tuned.model_dir).state_dict()
    embedding = next(k for k in base if k.endswith(("embed_tokens.weight", "wte.weight")))
    assert torch.equal(merged[embedding], base[embedding])  # not adapted
    moved = [k for k in base if k.endswith(("proj.weight", "attn.weight")) and not torch.equal(merged[k], base[k])]
    assert moved, "LoRA training did not reach the merged projection weights"
    _generates(tuned.model_dir)
    assert load_model(tuned.model_dir).meta.tokenizer_sha256  # the base's tokenizer, named: PPO checks it

    rm = reward.run(llama_cfg)  # full fine-tuning of the SFT model plus a scalar head
    assert rm.model_uri == f"models:/{PREFIX}-reward/1" and "reward/accuracy" in rm.metrics
    scorer = load_model(rm.model_dir)
    assert scorer.meta.kind == "reward" and scorer.meta.format == HF_FORMAT
    assert scorer.head.linear.in_features == scorer.gpt.hidden_size

    policy = ppo.run(llama_cfg)
    assert policy.stopped is None and policy.model_uri == f"models:/{PREFIX}-policy/1"
    tags = client.get_model_version(f"{PREFIX}-policy", "1").tags
    assert tags["alignops.parent_model"] == tuned.model_uri and tags["alignops.reward_model"] == rm.model_uri
    assert len(client.get_metric_history(policy.run_id, "ppo/kl")) == llama_cfg.ppo.iterations
    _plain_hf(policy.model_dir)
    _generates(policy.model_dir)
    served = mlflow.pyfunc.load_model(policy.model_uri)  # the registered policy as MLflow serves it
    assert len(served.predict(["Say hi"], params={"max_new_tokens": 4})) == 1

    preferred = dpo.run(llama_cfg)
    assert preferred.model_uri == f"models:/{PREFIX}-policy/2" and "test/accuracy" in preferred.metrics
    assert client.get_model_version(f"{PREFIX}-policy", "2").tags["alignops.method"] == "dpo"
    _generates(preferred.model_dir)

    classifier = classify.run(llama_cfg)
    assert classifier.model_uri == f"models:/{PREFIX}-classifier/1"
    assert 0.0 <= classifier.metrics["test/f1"] <= 1.0
    loaded = load_model(classifier.model_dir)
    assert loaded.meta.labels == classify.LABELS and loaded.meta.format == HF_FORMAT
    assert loaded.head.linear.out_features == len(classify.LABELS)
