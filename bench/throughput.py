"""Pretraining throughput of models.gpt.GPT: tokens/s, ms/step, achieved TFLOP/s and MFU.

One training step = forward + cross-entropy + backward + AdamW step on random tokens (batch_size x block_size); the
cross-entropy is the stages' (models.cross_entropy, as models.lm.LMModule.loss computes it).
Warmup steps are run first (allocator, kernel selection, torch.compile), then the timed steps. MFU is the
achieved FLOP/s (GPT.flops_per_token() x tokens/s) over the matmul peak measured by bench/matmul_peak.py in the
same dtype on the same device. By default bf16 autocast (fp32 weights and AdamW state) on CUDA and on a CPU with
native bf16 (AVX512-BF16/AMX), as the stages train (alignops.precision); fp32 on other CPUs.

    python bench/throughput.py                      # both presets, one JSON object per line
    python bench/throughput.py --preset tiny
    python bench/throughput.py --preset small --steps 20 --compile
    python bench/throughput.py --n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --vocab-size 50304 --batch-size 8
"""

from __future__ import annotations

# Runnable as `python bench/throughput.py` from the repo root: put the repo root on sys.path so `models` and
# `bench` import.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from bench._common import (  # noqa: E402
    autocast,
    dtype_name,
    environment,
    preset_shapes,
    resolve_device,
    resolve_dtype,
    synchronize,
)
from bench.matmul_peak import measure_peak_flops  # noqa: E402
from models.cross_entropy import cross_entropy_sum  # noqa: E402
from models.gpt import GPT, GPTConfig  # noqa: E402

PRESETS = preset_shapes()  # configs/*.yaml: the shapes the stages train
SHAPE_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "batch_size")


def bench_train(
    shape: dict,
    device: torch.device,
    dtype: torch.dtype,
    steps: int,
    warmup: int,
    compile: bool = False,
    peak_flops: float | None = None,
    seed: int = 0,
) -> dict:
    """Time `steps` training steps after `warmup` ones; returns the figures (see module docstring)."""
    torch.manual_seed(seed)
    B, T, V = shape["batch_size"], shape["block_size"], shape["vocab_size"]
    config = GPTConfig(**{k: shape[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")})
    model = GPT(config).to(device)  # weights stay fp32: autocast computes in `dtype`
    model.train()
    fwd = torch.compile(model) if compile else model
    # fused AdamW: one kernel a step, on CUDA and CPU alike (what models.optim.build gives the stages)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
    x = torch.randint(V, (B, T), device=device)
    y = torch.randint(V, (B, T), device=device)

    def step() -> torch.Tensor:
        with autocast(device, dtype):
            logits = fwd(x)
            # the stages' loss (models.lm.LMModule.loss): the gradient made in the forward, float32 arithmetic
            loss = cross_entropy_sum(logits.view(-1, V), y.view(-1)) / y.numel()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - t0

    # per-step times without a sync per step: CUDA events on the GPU's clock, host timestamps on CPU
    cuda = device.type == "cuda"
    marks: list = []

    def mark() -> None:
        if cuda:
            marks.append(torch.cuda.Event(enable_timing=True))
            marks[-1].record()
        else:
            marks.append(time.perf_counter())

    t0 = time.perf_counter()
    for _ in range(steps):
        mark()
        loss = step()
    mark()
    synchronize(device)
    elapsed = time.perf_counter() - t0
    if cuda:
        step_ms = [a.elapsed_time(b) for a, b in zip(marks, marks[1:], strict=False)]
    else:
        step_ms = [1000 * (b - a) for a, b in zip(marks, marks[1:], strict=False)]
    step_ms.sort()

    tokens_per_s = steps * B * T / elapsed
    flops_per_token = model.flops_per_token()
    achieved = flops_per_token * tokens_per_s
    if peak_flops is None:
        peak_flops = measure_peak_flops(device, dtype)
    out = {
        **shape,
        "params": model.num_params(),  # non-embedding (wpe left out), as flops_per_token counts them
        "params_total": model.num_params(non_embedding=False),
        "flops_per_token": flops_per_token,
        "dtype": dtype_name(dtype),
        "compile": compile,
        "warmup_steps": warmup,
        "warmup_s": round(warmup_s, 3),
        "steps": steps,
        "ms_per_step": round(1000 * elapsed / steps, 3),  # mean: what tokens_per_s and mfu use
        "ms_per_step_median": round(step_ms[len(step_ms) // 2], 3),
        "ms_per_step_min": round(step_ms[0], 3),
        "tokens_per_s": round(tokens_per_s, 1),
        "achieved_tflops": round(achieved / 1e12, 5),
        "peak_tflops": round(peak_flops / 1e12, 4),
        "mfu": round(achieved / peak_flops, 4),
        "final_loss": round(loss.item(), 4),
    }
    if device.type == "cuda":
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset",
        nargs="+",
        choices=sorted(PRESETS),
        help="shape presets, one JSON line each (default: tiny and small; shape flags override a preset's values; "
        "shape flags alone start from tiny)",
    )
    for name in SHAPE_ARGS:
        parser.add_argument("--" + name.replace("_", "-"), type=int)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="autocast dtype: fp32 (no autocast), bf16, fp16 (default: bf16 on cuda or a bf16 cpu, else fp32)",
    )
    parser.add_argument("--steps", type=int, help="timed steps (default: 50 on cuda, 5 on cpu)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 10 on cuda, 2 on cpu)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compile time is in warmup)")
    parser.add_argument(
        "--peak-tflops", type=float, help="MFU denominator, e.g. a datasheet figure (default: measured matmul peak)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch.get_num_threads())")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if dtype == torch.float16:
        raise SystemExit("fp16 training needs a GradScaler, which this benchmark does not run: use bf16 or fp32")
    steps = args.steps or (50 if device.type == "cuda" else 5)
    warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 2)
    overrides = {k: getattr(args, k) for k in SHAPE_ARGS if getattr(args, k) is not None}
    presets = args.preset or (["tiny"] if overrides else ["tiny", "small"])
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None

    env = environment(device)
    for preset in presets:
        shape = {**PRESETS[preset], **overrides}
        name = preset if not overrides else f"{preset}+custom" if args.preset else "custom"
        result = bench_train(shape, device, dtype, steps, warmup, args.compile, peak, args.seed)
        result["peak_source"] = "--peak-tflops" if peak else "measured (bench/matmul_peak.py)"
        print(json.dumps({"preset": name, **env, **result}), flush=True)


if __name__ == "__main__":
    main()
