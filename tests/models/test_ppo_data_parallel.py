"""PPO, GRPO and RLOO on two CPU ranks over gloo: under DDP they train as one process at twice the batch, and under
FSDP (FSDP2 through alignops.stages.training.sharded_strategy: the policy, its reference and the reward model sharded
block by block, models.sharding; the trained policy gathered whole onto rank 0) as under DDP. Each case runs
tests/support/ppo_two_ranks.py in both settings with the same seeds: data parallelism must change where the rows
and the weights live and nothing else, so every iteration's logged figures and the trained policy must agree (to
float rounding: matmuls of other shapes, gradients reduced in another order).

    pytest tests/models/test_ppo_data_parallel.py            # LoRA PPO: DDP as one process, FSDP as DDP (~1 min)
    pytest tests/models/test_ppo_data_parallel.py -m slow    # GRPO, bf16, a transformers base, exact resume
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "ppo_two_ranks.py"
FIGURES = ("ppo/reward", "ppo/kl", "ppo/policy_loss", "ppo/value_loss", "ppo/entropy", "ppo/approx_kl")


def two_ranks(strategy: str, out: Path, *args: str) -> dict:
    # PL_GLOBAL_SEED set, as L.seed_everything leaves it (the stages call it): Lightning's DDP then reseeds the
    # global RNG at setup and one process does not, which must not change what PPO samples
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_GLOBAL_SEED": "123"}
    proc = subprocess.run([sys.executable, str(SCRIPT), strategy, str(out), *args], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and (strategy == "one" or "MEMBER: 2/2" in log), log[-4000:]
    return torch.load(out, weights_only=False) | {"log": log}


def assert_same_training(sharded: dict, ddp: dict) -> None:
    assert sorted(sharded["stats"]) == sorted(ddp["stats"])
    for iteration, stats in ddp["stats"].items():
        for name in FIGURES:
            got = sharded["stats"][iteration][name]
            assert got == pytest.approx(stats[name], rel=1e-4, abs=1e-6), (iteration, name)
    assert sharded["policy"].keys() == ddp["policy"].keys()
    for name, weight in ddp["policy"].items():
        torch.testing.assert_close(sharded["policy"][name], weight, rtol=1e-4, atol=1e-5, msg=name)


def test_lora_ppo_under_ddp_trains_as_one_process_at_twice_the_batch(tmp_path: Path) -> None:
    """Each rank samples its rows' draws of one stream (models.generation's global_rows) and weighs its loss by its
    share of the tokens. One minibatch an epoch: with several, each rank shuffles its own rows, so the minibatches
    are other (equally random) partitions of the same rollout than one process's."""
    one = two_ranks("one", tmp_path / "one.pt", "--lora", "--minibatches", "1")
    assert "MEMBER" not in one["log"]
    assert_same_training(two_ranks("ddp", tmp_path / "ddp.pt", "--lora", "--minibatches", "1"), one)


@pytest.mark.slow
def test_the_shuffled_control_under_ddp_trains_as_one_process_at_twice_the_batch(tmp_path: Path) -> None:
    """The experiment's shuffled control permutes the scores of every rank's rows together, as one process permutes
    its batch (a permutation on each rank of its own rows would give other rewards)."""
    args = ("--lora", "--minibatches", "1", "--control", "shuffle")
    assert_same_training(two_ranks("ddp", tmp_path / "ddp.pt", *args), two_ranks("one", tmp_path / "one.pt", *args))


@pytest.mark.slow
def test_full_finetuning_grpo_under_ddp_trains_as_one_process_at_twice_the_batch(tmp_path: Path) -> None:
    """Every row of a prompt's group sampled where one process samples it (rank r's prompts are r, r + 2, ...)."""
    args = ("--method", "grpo", "--minibatches", "1")
    assert_same_training(two_ranks("ddp", tmp_path / "ddp.pt", *args), two_ranks("one", tmp_path / "one.pt", *args))


def test_lora_ppo_under_fsdp_trains_as_under_ddp_with_half_of_every_model_on_each_rank(tmp_path: Path) -> None:
    sharded = two_ranks("fsdp", tmp_path / "fsdp.pt", "--lora")
    ddp = two_ranks("ddp", tmp_path / "ddp.pt", "--lora")
    assert_same_training(sharded, ddp)
    # after an iteration, rank 0 held half of the policy's and the reward model's weights (a few padding elements
    # more), all of DDP's
    assert sharded["local"]["policy"] == pytest.approx(0.5, abs=0.01)
    assert sharded["local"]["reward"] == pytest.approx(0.5, abs=0.01)
    assert ddp["local"]["policy"] == ddp["local"]["reward"] == 1.0
    # and the policy trained: the merged LoRA weights moved from the SFT start (adapters start at B = 0)
    from tests.models.test_ppo_module import tiny_gpt

    start = tiny_gpt(0).state_dict()
    assert max((sharded["policy"][k] - start[k]).abs().max().item() for k in start) > 1e-3


@pytest.mark.slow
def test_full_finetuning_grpo_under_fsdp_trains_as_under_ddp(tmp_path: Path) -> None:
    """Every policy weight trainable (the root unit's tied embedding and lm_head too), no critic; a frozen copy of
    the policy as the reference, sharded too and kept so between its forwards (its root included)."""
    sharded = two_ranks("fsdp", tmp_path / "fsdp.pt", "--method", "grpo")
    assert_same_training(sharded, two_ranks("ddp", tmp_path / "ddp.pt", "--method", "grpo"))
    assert sharded["local"]["reference"] == pytest.approx(0.5, abs=0.01)
    assert sharded["local"]["reward"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_lora_ppo_in_bf16_under_fsdp_decodes_and_trains_as_under_ddp(tmp_path: Path) -> None:
    """bf16-mixed under FSDP: autocast over gathered and sharded weights, the LoRA adapters folded into the decoding
    weights as under DDP. (This tiny model's samples do not flip on the rounding that unfolded adapters would give;
    the decoding test below pins the folding, and SmolLM2 showed it: README, Multi-device training.)"""
    args = ("--lora", "--precision", "bf16-mixed", "--iterations", "4")
    assert_same_training(two_ranks("fsdp", tmp_path / "fsdp.pt", *args), two_ranks("ddp", tmp_path / "ddp.pt", *args))


@pytest.mark.slow
def test_a_transformers_policy_and_reward_model_under_fsdp_train_as_under_ddp(tmp_path: Path) -> None:
    """A Hugging Face base (Llama's shape): its decoder layers (_no_split_modules) are the units, its KV cache
    decodes from the gathered weights."""
    sharded = two_ranks("fsdp", tmp_path / "fsdp.pt", "--lora", "--hf", "llama")
    assert_same_training(sharded, two_ranks("ddp", tmp_path / "ddp.pt", "--lora", "--hf", "llama"))
    assert sharded["local"]["policy"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_a_sharded_run_resumes_exactly_from_its_checkpoint(tmp_path: Path) -> None:
    """Checkpoints are single full files holding the trained weights only (the LoRA adapters and the value head):
    the strategy loads them into the shards, the frozen weights stay the module's own."""
    whole = two_ranks("fsdp", tmp_path / "whole.pt", "--lora", "--iterations", "3")
    first = two_ranks("fsdp", tmp_path / "first.pt", "--lora", "--iterations", "2")
    saved = torch.load(first["last"], weights_only=False)["state_dict"]
    assert saved and all(".lora_" in k or k.startswith("value_head.") for k in saved)
    resumed = two_ranks("fsdp", tmp_path / "resumed.pt", "--lora", "--iterations", "3", "--resume", first["last"])
    assert sorted(resumed["stats"]) == [3]
    for name in FIGURES:
        assert resumed["stats"][3][name] == whole["stats"][3][name], name
    for name, weight in whole["policy"].items():
        torch.testing.assert_close(resumed["policy"][name], weight, rtol=0, atol=0, msg=name)
    # the module loads non-strictly (the frozen weights are not in the file), so the strategy checks the keys: a
    # LoRA run's checkpoint does not resume a full fine-tuning run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "fsdp", str(tmp_path / "wrong.pt"), "--resume", first["last"]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "does not fit this module: missing ['model.lm_head.weight'" in proc.stderr, (
        proc.stderr[-3000:]
    )


def test_blocks_are_found_in_the_project_gpt_and_a_transformers_model_and_a_model_without_them_is_refused() -> None:
    from models.base import HFCausalLM
    from models.gpt import Block
    from models.sharding import shard_causal_lm, transformer_blocks
    from tests.models.test_ppo_module import tiny_gpt
    from tests.support.hf_models import tiny_model

    assert [type(b) for b in transformer_blocks(tiny_gpt(0))] == [Block, Block]
    assert [type(b).__name__ for b in transformer_blocks(HFCausalLM(tiny_model("llama")))] == ["LlamaDecoderLayer"] * 2
    with pytest.raises(ValueError, match="no transformer blocks"):
        shard_causal_lm(torch.nn.Sequential(torch.nn.Linear(4, 4)), mesh=None)


def test_decoding_casts_a_gathered_models_weights_once_and_leaves_a_sharded_ones_to_autocast(tmp_path: Path) -> None:
    """models.generation.autocast_weights swaps a frozen Linear weight for its bf16 cast (and folds LoRA) only where
    the weights are whole: a model not sharded, or one inside models.sharding.gathered; never a shard. One process,
    a gloo group of one: fully_shard still makes every unit an FSDP module."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from models.generation import autocast_weights
    from models.sharding import gathered, holds_whole_weights, shard_causal_lm
    from tests.models.test_ppo_module import tiny_gpt

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        model = shard_causal_lm(tiny_gpt(0).requires_grad_(False), init_device_mesh("cpu", (1,)))
        linear = model.transformer.h[0].mlp.c_fc
        x = torch.randint(0, 50, (2, 5))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not holds_whole_weights(model)
            with autocast_weights(model):
                assert linear.weight.dtype == torch.float32  # a shard (DTensor): left to autocast
                model(x)
            with gathered(model):
                assert holds_whole_weights(model)
                with autocast_weights(model):
                    assert linear.weight.dtype == torch.bfloat16  # whole: cast once for the block
                    model(x)  # and FSDP's hooks leave the swapped weight in place for the forward
                    assert linear.weight.dtype == torch.bfloat16
                assert linear.weight.dtype == torch.float32
            assert not holds_whole_weights(model)
            assert type(linear.weight).__name__ == "DTensor"  # resharded after the block
    finally:
        dist.destroy_process_group()
