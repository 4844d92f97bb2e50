"""SFT packing against padding on the real SFT pairs and the real base (SmolLM2-135M-Instruct, LoRA): the same
examples, once right-padded in batches (the default loader) and once packed into rows by best-fit decreasing
(alignops.data.loaders.PackedExamples, `sft.packing`). One JSON object per (layout, precision).

The pairs are the first --examples of the data version's sft train split (build it with `alignops data build`),
shuffled with one seed, in the base's chat template and cut to --max-len tokens as the SFT stage does. Both
layouts see the same examples once, --batch-size rows a step (a padded row holds one pair; a packed row holds
several), AdamW on LoRA r8 adapters, after one untimed warm-up step. `fill` is the fraction of the positions
computed that are real tokens; `tokens_per_s` counts real tokens only, so the two layouts compare on the work
that matters. `loss` is the mean loss over all the examples' response tokens before any update (the two must
agree: packing changes the layout, not the loss).

    python bench/packing.py                              # 128 pairs, max_len 256, batch 4, fp32 and bf16
    python bench/packing.py --examples 64 --precisions bf16 --threads 2
"""

from __future__ import annotations

# Runnable as `python bench/packing.py` from the repo root: put the repo root on sys.path.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402

import torch  # noqa: E402

from bench._common import DTYPES, autocast, environment, parse_smollm2_args, smollm2, timed_training  # noqa: E402


def batches(examples, layout: str, batch_size: int, max_len: int, pad: int) -> list[dict[str, torch.Tensor]]:
    """The examples as the SFT stage's loader collates them, in order, batch_size rows a batch."""
    from alignops.data.loaders import PackedExamples, collate_packed, collate_right_pad

    if layout == "padded":
        collate, rows = collate_right_pad(pad), [examples[i] for i in range(len(examples))]
    else:
        packed = PackedExamples(examples, max_len)
        collate, rows = collate_packed(pad), [packed[i] for i in range(len(packed))]
    return [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


def real_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["real_tokens"]) if "real_tokens" in batch else int(batch["attention_mask"].sum())


def measure(module, layout_batches: list, precision: str, device: torch.device) -> dict:
    dtype = DTYPES[precision]
    loss_sum, targets = 0.0, 0  # every response token's loss before training: the same in both layouts
    with torch.no_grad(), autocast(device, dtype):
        for b in layout_batches:
            loss, n = module.loss(b)
            loss_sum, targets = loss_sum + loss.item() * int(n), targets + int(n)
    seconds = timed_training(lambda b: module.loss(b)[0], module, layout_batches, device, dtype)
    positions = sum(b["input_ids"].numel() for b in layout_batches)
    tokens = sum(real_tokens(b) for b in layout_batches)
    return {"steps": len(layout_batches), "seconds": round(seconds, 2), "positions": positions, "real_tokens": tokens,
            "fill": round(tokens / positions, 3), "tokens_per_s": round(tokens / seconds, 1),
            "loss_before": round(loss_sum / targets, 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--preset", default="smollm2", help="whose data version (data.data_dir) to read")
    args, device = parse_smollm2_args(parser)

    from alignops.base_models import SMOLLM2
    from alignops.config import LoraConfig, load_config
    from alignops.data import datasets
    from alignops.data.loaders import SFTDataset
    from models.base import HFCausalLM
    from models.lm import LMModule

    cfg = load_config(args.preset)
    records = datasets.load_split(cfg.data.data_dir, "sft", "train")
    random.Random(0).shuffle(records)
    folder, tok = smollm2()
    examples = SFTDataset(records[: args.examples], tok, args.max_len)
    for precision in args.precisions:
        for layout in ("padded", "packed"):
            torch.manual_seed(0)
            lora = LoraConfig(r=args.lora_r, alpha=2.0 * args.lora_r).model_dump()
            module = LMModule.from_base(HFCausalLM.from_folder(folder), lora=lora).to(device).train()
            figures = measure(module, batches(examples, layout, args.batch_size, args.max_len, tok.pad_id), precision,
                              device)  # fmt: skip
            record = {"benchmark": "packing", "model": SMOLLM2.name, "layout": layout, "examples": len(examples),
                      "max_len": args.max_len, "batch_size": args.batch_size, "lora_r": args.lora_r,
                      "precision": precision if precision == "fp32" else f"{precision}-autocast", **figures,
                      **environment(device)}  # fmt: skip
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
