"""Rollout generation tokens/s: the project's decoding (models.generation.generate: batched, KV cache, no host read
per token) against transformers' own `generate` on the same model, greedy, at batch 1, 16 and 64. One JSON object
per (model, batch, precision), with both figures, their ratio and the share of rows whose tokens agree.

Models: the real pretrained base SmolLM2-135M-Instruct (bench/_common.smollm2(): `alignops model fetch`'s cache
under ALIGNOPS_HOME, fetched on first use) and a tiny random Llama built from a config (nothing downloaded), where
per-token overhead rather than matmuls dominates.

Timed: prefill plus max_new_tokens steps, EOS suppressed on both sides, so every row runs max_new_tokens; tokens/s
counts new tokens over all rows. Best of --repeats, after one untimed warm-up call of each implementation.

    python bench/generation_vs_hf.py                                   # both models, batch 1/16/64, 32 new tokens
    python bench/generation_vs_hf.py --models tiny --batch-sizes 1 4 --max-new-tokens 8   # a quick smoke run
"""

from __future__ import annotations

# Runnable as `python bench/generation_vs_hf.py` from the repo root: put the repo root on sys.path.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

from bench._common import DTYPES, autocast, environment, parse_smollm2_args, smollm2, synchronize  # noqa: E402

MODELS = ("smollm2", "tiny")
PROMPTS = [
    "What is the capital of France?",
    "Write a two-sentence review of a movie you liked.",
    "Give me three tips for sleeping better.",
    "Explain what a neural network is in one paragraph.",
]
TINY_PROMPT_TOKENS = (8, 24)  # random prompts of the tiny model: lengths drawn in this range, left-padded


def tiny_llama(seed: int = 0):
    """A 2-layer, 64-wide Llama (SmolLM2's architecture at toy size), random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=2048, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def prompts(name: str, batch_size: int, tok) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompt ids and mask (B, T), and the pad id."""
    from alignops.data.loaders import collate_left_pad

    if name == "smollm2":
        rows = tok.encode_batch([tok.chat(PROMPTS[i % len(PROMPTS)]) for i in range(batch_size)])
        pad = tok.pad_id
    else:
        g = torch.Generator().manual_seed(batch_size)
        lengths = torch.randint(*TINY_PROMPT_TOKENS, (batch_size,), generator=g).tolist()
        rows = [torch.randint(1, 2048, (n,), generator=g).tolist() for n in lengths]
        pad = 0
    batch = collate_left_pad(pad)([{"input_ids": torch.tensor(r)} for r in rows])
    return batch["input_ids"], batch["attention_mask"], pad


def best_time(run: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    run()  # warm-up, untimed: the first call in a process sets up kernels (seconds on CPU)
    best, out = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    args, device = parse_smollm2_args(parser)

    from transformers import GenerationConfig as HFGenerationConfig

    from models.base import HFCausalLM
    from models.generation import GenerationConfig, generate

    for name in args.models:
        tok = None
        if name == "smollm2":
            folder, tok = smollm2()
            model = HFCausalLM.from_folder(folder).to(device).eval()
        else:
            model = HFCausalLM(tiny_llama()).to(device).eval()
        for batch_size in args.batch_sizes:
            ids, mask, pad = prompts(name, batch_size, tok)
            ids, mask = ids.to(device), mask.to(device)
            # EOS suppressed on both sides (min_new_tokens = max_new_tokens): every row runs max_new_tokens.
            # transformers falls back to the model's own generation_config.eos_token_id when given None, so
            # suppressing is the one way to make its rows run full length (SmolLM2 otherwise ends after 8 tokens).
            eos = model.model.generation_config.eos_token_id
            eos = eos[0] if isinstance(eos, list) else eos
            N = args.max_new_tokens
            ours = GenerationConfig(max_new_tokens=N, min_new_tokens=N, eos_token_id=eos, pad_token_id=pad)
            theirs = HFGenerationConfig(max_new_tokens=N, min_new_tokens=N, do_sample=False, pad_token_id=pad,
                                        eos_token_id=eos, use_cache=True)  # fmt: skip
            for precision in args.precisions:
                with autocast(device, DTYPES[precision]):
                    own_s, own = best_time(lambda: generate(model, ids, mask, ours)[0], args.repeats, device)  # noqa: B023
                    hf_s, hf = best_time(
                        lambda: model.model.generate(input_ids=ids, attention_mask=mask, generation_config=theirs),  # noqa: B023
                        args.repeats,
                        device,
                    )
                new_tokens = batch_size * args.max_new_tokens
                width = ids.size(1)
                record = {
                    "benchmark": "generation_vs_hf",
                    "model": name,
                    "batch_size": batch_size,
                    "precision": precision if precision == "fp32" else f"{precision}-autocast",
                    "prompt_tokens": width,
                    "new_tokens": new_tokens,
                    "alignops_seconds": round(own_s, 3),
                    "transformers_seconds": round(hf_s, 3),
                    "alignops_tokens_per_s": round(new_tokens / own_s, 1),
                    "transformers_tokens_per_s": round(new_tokens / hf_s, 1),
                    "speedup": round(hf_s / own_s, 2),
                    # greedy on both sides: rows whose new tokens are identical (bf16 may flip near-ties)
                    "same_tokens": round(float((own[:, width:] == hf[:, width:]).all(dim=1).float().mean()), 3),
                    **environment(device),
                }
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
