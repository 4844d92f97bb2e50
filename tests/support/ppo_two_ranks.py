"""PPO on two CPU ranks (gloo), under DDP or under FSDP (FSDP2, alignops.stages.training.sharded_strategy), or in
one process at twice the batch, for tests/models/test_ppo_data_parallel.py. A script, not a function: Lightning
starts the second rank by running the command line again.

    python tests/support/ppo_two_ranks.py {ddp,fsdp,one} OUT [--lora] [--method grpo] [--iterations 3] [--resume CKPT]
                                                        [--hf llama | --hf-folder DIR] [--precision bf16-mixed]

Writes OUT (torch.save, rank 0): every iteration's logged metrics, the trained policy's whole state dict
(PPOModule.policy_model(), gathered from the shards under FSDP), the last checkpoint's path and the share of
each model's weights rank 0 held. The policy is the
tiny GPT of tests/models/test_ppo_module.py (or, with --hf, a tiny transformers model); the reward model a
RewardModel on another of the same kind, so that it too is sharded under FSDP."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "models")]  # alignops, models and tests; test_ppo_module

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from test_ppo_module import EOS, PAD, Prompts, StatsRecorder, config, left_pad, tiny_gpt  # noqa: E402

from alignops.data.loaders import resumable_loader  # noqa: E402
from alignops.stages.training import sharded_strategy  # noqa: E402
from models.ppo.module import PPOModule  # noqa: E402
from models.reward import RewardModel  # noqa: E402

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


class Shares(L.Callback):
    """The share of each model's weights this rank holds after each iteration, before any checkpoint is written
    (which would reshard everything): 1/2 of every sharded tensor, all of a whole one, as it is between rollouts."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def on_train_batch_end(self, trainer: L.Trainer, module: PPOModule, *args) -> None:
        parts = {"policy": module.model, "reward": module.reward, "value_head": module.value_head}
        if module.reference is not None:
            parts["reference"] = module.reference
        self.last = {
            name: sum(getattr(p, "to_local", lambda p=p: p)().numel() for p in part.parameters())
            / sum(p.numel() for p in part.parameters())
            for name, part in parts.items()
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("strategy", choices=["ddp", "fsdp", "one"], help="one: one process at twice the batch")
    parser.add_argument("out", type=Path)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--method", default="ppo")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--hf", help="a tiny transformers model of this shape (tests/support/hf_models), not the GPT")
    parser.add_argument("--hf-folder", help="a Hugging Face model folder (a real base) for the policy and reward model")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--minibatches", type=int, default=2, help="per epoch")
    parser.add_argument("--control", default="none", help="PPOConfig.reward_control: none, negate or shuffle")
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.hf_folder:
        from models.base import HFCausalLM

        policy, reward_base = HFCausalLM.from_folder(args.hf_folder), HFCausalLM.from_folder(args.hf_folder)
    elif args.hf:
        from models.base import HFCausalLM
        from tests.support.hf_models import tiny_model

        policy, reward_base = HFCausalLM(tiny_model(args.hf, 0)), HFCausalLM(tiny_model(args.hf, 1))
    else:
        policy, reward_base = tiny_gpt(0), tiny_gpt(1)
    reward = RewardModel.from_base(reward_base).eval()
    ranks = 1 if args.strategy == "one" else 2
    prompts = (4 if args.method != "ppo" else 8) * 2 // ranks  # per rank: every run's iteration is 8 or 16 prompts
    episodes = prompts * (2 if args.method != "ppo" else 1)
    cfg = config(method=args.method, rollout_batch_size=prompts, minibatch_size=episodes // args.minibatches,
                 ppo_epochs=2, max_new_tokens=args.max_new_tokens, lr=args.lr, reward_control=args.control,
                 **({"group_size": 2} if args.method != "ppo" else {}))  # fmt: skip
    module = PPOModule.from_base(policy, reward=reward, config=cfg, eos_id=EOS, pad_id=PAD,
                                 lora=LORA if args.lora else None)  # fmt: skip
    recorder, shares = StatsRecorder(), Shares()
    checkpoints = ModelCheckpoint(dirpath=args.out.parent / f"{args.out.stem}-ckpt", save_last=True,
                                  every_n_train_steps=cfg.steps_per_iteration)  # fmt: skip
    # GRPO never reads the value head: DDP must look for parameters without a gradient (as the stage has it)
    strategy = {"fsdp": sharded_strategy(), "ddp": "ddp_find_unused_parameters_true", "one": "auto"}[args.strategy]
    trainer = L.Trainer(
        accelerator="cpu", devices=ranks, strategy=strategy,
        max_steps=args.iterations * cfg.steps_per_iteration, logger=False, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False, precision=args.precision,
        callbacks=[recorder, shares, checkpoints], default_root_dir=args.out.parent,
    )  # fmt: skip
    # each rank reads its own half of every batch of prompts (alignops.data.loaders shards them)
    loader = resumable_loader(Prompts(64), batch_size=cfg.rollout_batch_size, seed=0, collate_fn=left_pad,
                              drop_last=True)  # fmt: skip
    trainer.fit(module, loader, ckpt_path=args.resume)
    local = shares.last
    policy = module.policy_model()  # a collective under FSDP: every rank calls it
    if trainer.is_global_zero:
        state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
        last = Path(checkpoints.last_model_path)
        torch.save({"stats": recorder.stats, "policy": state, "last": str(last), "local": local}, args.out)


if __name__ == "__main__":
    main()
