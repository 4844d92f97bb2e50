"""The PPO stage's own pieces around the fit: what a stopped run publishes (alignops.stages.ppo._last_healthy_policy:
the SFT policy with the last checkpoint's trained weights, LoRA merged, built anew from the SFT folder, as the
module's own policy may be sharded; a PPO checkpoint holds the trained parameters only, so this is the one place
their merge with the frozen base happens outside the module), and the precision check under FSDP."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from alignops.artifacts import ModelMeta, save_model
from alignops.config import LoraConfig
from alignops.data.tokenizer import train_tokenizer
from alignops.stages.ppo import _last_healthy_policy
from models.gpt import GPT, GPTConfig
from models.lm import with_lora
from models.lora import merge_lora


def test_a_stopped_runs_policy_is_the_last_checkpoints_adapters_merged_into_the_sft_weights(tmp_path: Path) -> None:
    tok = train_tokenizer(["the river is quiet at night", "a bright morning"] * 10, vocab_size=300, min_frequency=1,
                          out_dir=tmp_path / "tokenizer")  # fmt: skip
    torch.manual_seed(0)
    sft = GPT(GPTConfig(vocab_size=300, n_layer=2, n_head=2, n_embd=16, block_size=32))
    folder = save_model(tmp_path / "sft", sft, tok.path, ModelMeta(kind="causal_lm", stage="sft"))
    lora = LoraConfig(r=4).model_dump()
    trained = with_lora(copy.deepcopy(sft), lora)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:  # B starts at 0: a trained adapter has moved it
                p.normal_()
    checkpoints = tmp_path / "ppo" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # what PPOModule.on_save_checkpoint keeps: the adapters (and the value head), not the frozen base
    state = {f"model.{k}": v for k, v in trained.state_dict().items() if "lora_" in k}
    state["value_head.linear.weight"] = torch.zeros(1, 16)
    torch.save({"state_dict": state}, checkpoints / "last.ckpt")
    # the stage's Start, of which the function reads these two
    start = SimpleNamespace(folder=folder, stage_dir=SimpleNamespace(checkpoints=checkpoints))

    policy = _last_healthy_policy(start, lora, torch.float32)
    want = merge_lora(copy.deepcopy(trained)).state_dict()
    assert policy.state_dict().keys() == sft.state_dict().keys()  # plain layers: no adapter left
    for name, weight in want.items():
        torch.testing.assert_close(policy.state_dict()[name], weight, msg=name)
    assert not torch.equal(policy.state_dict()["transformer.h.0.attn.c_attn.weight"],
                           sft.state_dict()["transformer.h.0.attn.c_attn.weight"])  # fmt: skip

    assert _last_healthy_policy(start, lora, torch.bfloat16).transformer.wte.weight.dtype == torch.bfloat16
    (checkpoints / "last.ckpt").unlink()  # stopped before any checkpoint: the SFT policy itself
    for name, weight in _last_healthy_policy(start, lora, torch.float32).state_dict().items():
        assert torch.equal(weight, sft.state_dict()[name]), name


def test_a_precision_fsdp_cannot_run_is_refused_before_anything_runs(home: Path) -> None:
    from alignops.config import ConfigError, load_config
    from alignops.stages import ppo

    cfg = load_config("tiny", ["trainer.strategy=fsdp", "trainer.precision=16-mixed", "trainer.accelerator=cpu"])
    with pytest.raises(ConfigError, match="16-mixed does not run under FSDP.*bf16-mixed"):
        ppo.run(cfg)  # no data was built: the precision is checked first
