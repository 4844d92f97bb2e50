"""Size and CPU generation speed of the compressed forms of the GPT at the presets' shapes, with random weights:
fp32; int8 as `alignops compress` makes it (every Linear, lm_head included); int8 with lm_head left fp32 (the
alternative, for comparison); 50% magnitude-pruned (stored and run dense); a half-depth student. Quality needs a
trained model: `alignops compress` measures it (test loss, greedy agreement) on a registered one.

Greedy decoding with the KV cache (models.generation.generate), prompt --prompt-len random tokens, --new-tokens
new ones (no EOS); each variant run once to warm up, then --repeats times taking turns, fastest kept; tokens/s =
batch x new_tokens / time. weight_mb: bytes of the weights in memory (models.compression.weight_bytes).

    python bench/compression.py                               # tiny and small, batch 1 and 8, 1 thread
    python bench/compression.py --preset small --batch-size 1 --threads 2 --repeats 5
"""

from __future__ import annotations

# Runnable as `python bench/compression.py` from the repo root: put the repo root on sys.path.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from bench._common import environment, preset_shapes  # noqa: E402
from bench.generation import time_interleaved, with_cache  # noqa: E402
from models.compression import count_parameters, prune_magnitude, quantize_int8, weight_bytes  # noqa: E402
from models.gpt import GPT, GPTConfig  # noqa: E402

PRESETS = {k: {n: v for n, v in s.items() if n != "batch_size"} for k, s in preset_shapes().items()}


def int8_blocks_only(gpt: GPT) -> GPT:
    """Dynamic int8 of the blocks' Linear layers only; lm_head stays the fp32 matrix tied to wte."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(gpt), {"transformer.h": per_channel_dynamic_qconfig}, dtype=torch.qint8)


def variants(gpt: GPT) -> dict[str, nn.Module]:
    half = GPTConfig(**{**gpt.config.__dict__, "n_layer": max(1, gpt.config.n_layer // 2)})
    return {
        "fp32": gpt,
        "int8": quantize_int8(gpt),
        "int8_fp32_lm_head": int8_blocks_only(gpt),
        "pruned_0.5": prune_magnitude(gpt, 0.5)[0],
        "student_half_depth": GPT(half).eval(),
    }


def bench_preset(preset: str, batch_size: int, prompt_len: int, new_tokens: int, repeats: int) -> list[dict]:
    shape = dict(PRESETS[preset])
    shape["block_size"] = max(shape["block_size"], prompt_len + new_tokens)  # tiny's 64 positions: widen wpe
    torch.manual_seed(0)
    models = variants(GPT(GPTConfig(**shape)).eval())
    prompt = torch.randint(shape["vocab_size"], (batch_size, prompt_len))
    with torch.no_grad():
        times, _ = time_interleaved(
            {name: (lambda m=m: with_cache(m, prompt, new_tokens)) for name, m in models.items()},
            torch.device("cpu"),
            repeats,
        )
    rows = []
    for name, model in models.items():
        params, nonzero = count_parameters(model)
        rows.append({
            "preset": preset, "variant": name, "batch_size": batch_size, "prompt_len": prompt_len,
            "new_tokens": new_tokens, "params": params, "nonzero_share": round(nonzero / params, 4),
            "weight_mb": round(weight_bytes(model) / 1e6, 3),
            "tokens_per_s": round(batch_size * new_tokens / times[name], 1),
            "speedup": round(times["fp32"] / times[name], 3), "repeats": repeats,
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", choices=sorted(PRESETS), default=["tiny", "small"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant after a warmup, best kept")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as compress measures)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = environment(torch.device("cpu"))
    for preset in args.preset:
        for batch_size in args.batch_size:
            for row in bench_preset(preset, batch_size, args.prompt_len, args.new_tokens, args.repeats):
                print(json.dumps({**row, **env}), flush=True)


if __name__ == "__main__":
    main()
