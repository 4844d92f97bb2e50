"""Greedy generation tokens/s with and without the KV cache, and whether both produce the same tokens.

With cache: models.generation.generate (prefill the prompt into a KVCache, then one token per row per step).
Without: generate always uses the cache, so the baseline here is a plain loop that re-runs the full forward on the
growing sequence and takes the argmax of the last position (lm_head on that position only, as generate does).
Timed time includes the prefill; tokens/s counts new tokens over all rows (batch x new_tokens / seconds).

Weights are cast to --dtype (inference: default bf16 on CUDA and on a CPU with native bf16, else fp32). Greedy
tokens are compared in that dtype; in bf16 a near-tie can round differently between the cached and uncached
kernels, so for a non-fp32 dtype the comparison is repeated in fp32 ("tokens_identical_fp32"), where the two must agree.

    python bench/generation.py                      # tiny and small, batch 1 and 8, one JSON object per line
    python bench/generation.py --preset small --batch-size 8 --repeats 5
"""

from __future__ import annotations

# Runnable as `python bench/generation.py` from the repo root: put the repo root on sys.path so `models` and
# `bench` import.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from bench._common import dtype_name, environment, preset_shapes, resolve_device, resolve_dtype, synchronize  # noqa: E402
from models.generation import GenerationConfig, generate  # noqa: E402
from models.gpt import GPT, GPTConfig  # noqa: E402

# the model shapes of the presets under configs/ (batch sizes are this benchmark's own)
PRESETS = {k: {n: v for n, v in s.items() if n != "batch_size"} for k, s in preset_shapes().items()}


def with_cache(model: GPT, prompt: Tensor, new_tokens: int) -> Tensor:
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False)  # no eos: always new_tokens tokens
    sequences, _ = generate(model, prompt, None, config)
    return sequences


@torch.no_grad()
def without_cache(model: GPT, prompt: Tensor, new_tokens: int) -> Tensor:
    seq = prompt
    for _ in range(new_tokens):
        hidden = model.hidden_states(seq)  # full forward over every position, every step
        next_ids = model.lm_head(hidden[:, -1]).argmax(dim=-1)  # (B,)
        seq = torch.cat([seq, next_ids[:, None]], dim=1)
    return seq


def time_interleaved(
    fns: dict[str, Callable[[], Tensor]], device: torch.device, repeats: int
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Fastest of `repeats` runs of each fn, after one warmup run each, and each fn's output. The fns take turns,
    so load from other processes on a shared machine falls on all of them rather than on one."""
    outs = {name: fn() for name, fn in fns.items()}  # warmup
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            outs[name] = fn()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, outs


def compare(a: Tensor, b: Tensor, prompt_len: int) -> dict:
    same = a.shape == b.shape and torch.equal(a, b)
    out = {"tokens_identical": same}
    if not same and a.shape == b.shape:
        diff = (a[:, prompt_len:] != b[:, prompt_len:]).any(dim=0).nonzero()
        out["first_mismatch_step"] = int(diff[0]) if len(diff) else None
    return out


def bench_generation(
    preset: str,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    prompt_len: int,
    new_tokens: int,
    repeats: int,
    seed: int = 0,
) -> dict:
    shape = dict(PRESETS[preset])
    # prompt + new tokens must fit the learned positions (tiny has only 64): widen wpe when needed, which
    # changes neither the per-token compute nor the attention cost at a given length
    shape["block_size"] = max(shape["block_size"], prompt_len + new_tokens)
    torch.manual_seed(seed)
    model_fp32 = GPT(GPTConfig(**shape)).to(device).eval()
    # the timed model: the same weights, rounded to dtype
    model = model_fp32 if dtype == torch.float32 else copy.deepcopy(model_fp32).to(dtype)
    prompt = torch.randint(shape["vocab_size"], (batch_size, prompt_len), device=device)

    n = batch_size * new_tokens
    times, seqs = time_interleaved(
        {
            "cache": lambda: with_cache(model, prompt, new_tokens),
            "no_cache": lambda: without_cache(model, prompt, new_tokens),
        },
        device,
        repeats,
    )
    t_cache, t_full = times["cache"], times["no_cache"]
    out = {
        "preset": preset,
        **shape,
        "batch_size": batch_size,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "dtype": dtype_name(dtype),
        "repeats": repeats,
        "cache_ms": round(1000 * t_cache, 2),
        "no_cache_ms": round(1000 * t_full, 2),
        "cache_tokens_per_s": round(n / t_cache, 1),
        "no_cache_tokens_per_s": round(n / t_full, 1),
        "kv_cache_speedup": round(t_full / t_cache, 3),
        **compare(seqs["cache"], seqs["no_cache"], prompt_len),
    }
    if dtype != torch.float32:
        a = with_cache(model_fp32, prompt, new_tokens)
        b = without_cache(model_fp32, prompt, new_tokens)
        out["tokens_identical_fp32"] = compare(a, b, prompt_len)["tokens_identical"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", choices=sorted(PRESETS), default=["tiny", "small"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument(
        "--dtype", default="auto", help="weights: fp32, bf16, fp16 (default: bf16 on cuda or a bf16 cpu, else fp32)"
    )
    parser.add_argument("--repeats", type=int, help="timed runs after a warmup, best kept (default: 5 cuda, 3 cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch.get_num_threads())")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    repeats = args.repeats or (5 if device.type == "cuda" else 3)
    env = environment(device)
    for preset in args.preset:
        for batch_size in args.batch_size:
            result = bench_generation(
                preset, batch_size, device, dtype, args.prompt_len, args.new_tokens, repeats, args.seed
            )
            print(json.dumps({**result, **env}), flush=True)


if __name__ == "__main__":
    main()
