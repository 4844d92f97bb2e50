"""Reward-model training on whole rankings, four ways: one forward per pair side (each pair's chosen and rejected
texts run as their own rows: what a pairwise trainer such as TRL's RewardTrainer does, and what this project did
first); one forward per distinct response (InstructGPT's K passes per ranking of K); that with each ranking's
prompt run once, its K responses continuing from its KV cache (models.reward.RewardModel.pair_rewards); and that
with the frozen weights cast to bf16 once for the run (RewardModel.training_step today).
The real base (SmolLM2-135M-Instruct, LoRA r8) on the real rankings (the English VADER ones the smollm2 preset
trains on), batched as the reward stage batches them (reward.batch_by_ranking: batch_size whole rankings with all
their pairs, the train split's empty negatives included). One JSON object per (way, precision).

`rows_per_step` is the texts the backbone runs per step (a shared prompt counts as a row), `tokens_per_step` the
positions it runs (padding included); `pairs_per_s` counts pairs trained; `loss_before` (the Bradley-Terry loss of
every batch before any update) must agree between the ways: only the work differs.

    python bench/reward_rankings.py                          # 12 steps of 2 rankings, fp32 and bf16
    python bench/reward_rankings.py --steps 6 --precisions bf16 --threads 2
"""

from __future__ import annotations

# Runnable as `python bench/reward_rankings.py` from the repo root: put the repo root on sys.path.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402

from bench._common import DTYPES, autocast, environment, parse_smollm2_args, smollm2, timed_training  # noqa: E402


def per_pair_side(rm, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair's chosen and rejected text its own row, repeated texts included."""
    ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])
    mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
    return rm(ids, mask).chunk(2)


def distinct_texts(rm, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every distinct text once, whole: pair_rewards without the labels that mark the prompts."""
    return rm.pair_rewards({k: v for k, v in batch.items() if not k.endswith("_labels")})


def shared_prompts(rm, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prompt once too, the frozen LoRA base re-cast to bf16 at every forward (autocast's own casts)."""
    return rm.pair_rewards(batch)


def cast_once(rm, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """shared_prompts with the frozen weights' casts made once for the run, as RewardModel.training_step does
    (BackboneModule.frozen_weights_cast)."""
    with rm.frozen_weights_cast():
        return rm.pair_rewards(batch)


WAYS = {"per_pair_side": per_pair_side, "distinct_texts": distinct_texts, "shared_prompts": shared_prompts,
        "shared_prompts_cast_once": cast_once}  # fmt: skip


def measure(rm, batches: list, rewards, precision: str, device: torch.device) -> dict:
    from models.reward import pairwise_loss

    dtype = DTYPES[precision]
    rows: list[int] = []
    tokens: list[int] = []
    backbone = rm.model.hidden_states

    def counted(ids, **kwargs):  # the texts the backbone runs
        rows.append(ids.size(0))
        tokens.append(ids.numel())
        return backbone(ids, **kwargs)

    rm.model.hidden_states = counted

    def loss_of(b):
        chosen, rejected = rewards(rm, b)
        return pairwise_loss(chosen, rejected, targets=b["weight"], center_coef=rm.hparams.center_coef)

    with torch.no_grad(), autocast(device, dtype):
        loss_before = sum(loss_of(b).item() for b in batches) / len(batches)
    seconds = timed_training(loss_of, rm, batches, device, dtype, warmed_up=lambda: (rows.clear(), tokens.clear()))
    pairs = sum(b["chosen_ids"].size(0) for b in batches)
    return {"steps": len(batches), "seconds": round(seconds, 2), "pairs": pairs,
            "rows_per_step": round(sum(rows) / len(batches), 1),
            "tokens_per_step": round(sum(tokens) / len(batches), 1), "pairs_per_s": round(pairs / seconds, 2),
            "loss_before": round(loss_before, 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--preset", default="smollm2", help="whose data version and reward section to use")
    args, device = parse_smollm2_args(parser)

    from alignops.base_models import SMOLLM2
    from alignops.config import LoraConfig, load_config
    from alignops.data import datasets
    from alignops.data.preferences import (
        PairDataset,
        RankingBatches,
        collate_rankings,
        expand_rankings,
        with_empty_negatives,
    )
    from alignops.stages.training import of_sources
    from models.base import HFCausalLM
    from models.reward import RewardModel

    cfg = load_config(args.preset)
    rc = cfg.reward
    records = of_sources(datasets.load_split(cfg.data.data_dir, "rankings", "train"), rc.sources)
    records = records[: (args.steps + 1) * rc.batch_size]
    pairs = expand_rankings(records, weight_by="agreement")
    pairs = with_empty_negatives(pairs) if rc.empty_negatives else pairs
    folder, tok = smollm2()
    dataset = RankingBatches(pairs, PairDataset(pairs, tok, rc.max_len or 256))
    collate = collate_rankings(tok.pad_id)
    batches = [
        collate([dataset[i] for i in range(s, s + rc.batch_size)]) for s in range(0, len(dataset), rc.batch_size)
    ]
    for precision in args.precisions:
        for way, rewards in WAYS.items():
            torch.manual_seed(0)
            lora = LoraConfig(r=args.lora_r, alpha=2.0 * args.lora_r).model_dump()
            rm = RewardModel.from_base(HFCausalLM.from_folder(folder), lora=lora).to(device).eval()  # no dropout
            figures = measure(rm, batches, rewards, precision, device)
            record = {"benchmark": "reward_rankings", "model": SMOLLM2.name, "way": way,
                      "rankings_per_step": rc.batch_size, "lora_r": args.lora_r,
                      "precision": precision if precision == "fp32" else f"{precision}-autocast", **figures,
                      **environment(device)}  # fmt: skip
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
