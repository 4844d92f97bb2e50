"""Achievable matmul peak of this machine: the denominator of MFU.

Times square matmuls C = A @ B (2 * n**3 FLOPs each) at a few sizes, best of N samples per size, and reports the
fastest. By default bf16 on CUDA and on a CPU with native bf16 (AVX512-BF16/AMX), fp32 on other CPUs.

    python bench/matmul_peak.py                     # {"device": ..., "dtype": ..., "tflops": ..., "size": ...}
    python bench/matmul_peak.py --dtype bf16 --sizes 1024 2048 4096 --repeats 20

    from bench.matmul_peak import measure_peak_flops
    peak = measure_peak_flops(torch.device("cpu"), torch.float32)   # FLOP/s (not TFLOP/s)
"""

from __future__ import annotations

# Runnable as `python bench/matmul_peak.py` from the repo root: put the repo root on sys.path so `bench` imports.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from bench._common import dtype_name, environment, resolve_device, resolve_dtype, synchronize  # noqa: E402

CPU_SIZES = (512, 1024, 2048)
CUDA_SIZES = (2048, 4096, 8192)
MIN_SAMPLE_S = 0.05  # one timed sample runs enough matmuls to last this long (hides launch/timer overhead)


def default_sizes(device: torch.device) -> tuple[int, ...]:
    return CUDA_SIZES if device.type == "cuda" else CPU_SIZES


def time_matmul(n: int, device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """Best FLOP/s over `repeats` samples of an n x n x n matmul."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    c = torch.empty(n, n, device=device, dtype=dtype)
    # warm up (kernel selection, caches, clocks), and calibrate how many matmuls make one sample
    torch.matmul(a, b, out=c)
    synchronize(device)
    t0 = time.perf_counter()
    torch.matmul(a, b, out=c)
    synchronize(device)
    one = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, math.ceil(MIN_SAMPLE_S / one))
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b, out=c)
        synchronize(device)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n**3 / best


def measure_peak(
    device: torch.device | str, dtype: torch.dtype, sizes: tuple[int, ...] | None = None, repeats: int | None = None
) -> dict:
    """Best FLOP/s over `sizes` and the size that reached it, plus FLOP/s per size."""
    device = torch.device(device)
    sizes = tuple(sizes or default_sizes(device))
    repeats = repeats or (10 if device.type == "cuda" else 5)
    per_size = {n: time_matmul(n, device, dtype, repeats) for n in sizes}
    best = max(per_size, key=per_size.get)
    return {"flops": per_size[best], "size": best, "per_size": per_size, "repeats": repeats}


@functools.cache
def _cached_peak(device: str, dtype: torch.dtype) -> float:
    return measure_peak(device, dtype)["flops"]


def measure_peak_flops(device: torch.device | str, dtype: torch.dtype) -> float:
    """Achievable matmul FLOP/s on `device` in `dtype` (default sizes; measured once per process, then cached)."""
    return _cached_peak(str(torch.device(device)), dtype)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument(
        "--dtype", default="auto", help="fp32, bf16, fp16 (default: bf16 on cuda or a bf16 cpu, else fp32)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="matrix sizes n (default: 512 1024 2048 on cpu, 2048 4096 8192 on cuda)"
    )
    parser.add_argument("--repeats", type=int, help="samples per size, best kept (default: 5 cpu, 10 cuda)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch.get_num_threads())")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    result = measure_peak(device, dtype, tuple(args.sizes) if args.sizes else None, args.repeats)
    out = {
        **environment(device),
        "dtype": dtype_name(dtype),
        "tflops": round(result["flops"] / 1e12, 4),
        "size": result["size"],
        "per_size_tflops": {str(n): round(f / 1e12, 4) for n, f in result["per_size"].items()},
        "repeats": result["repeats"],
    }
    if device.type == "cuda" and dtype == torch.float32:
        out["allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    print(json.dumps(out))


if __name__ == "__main__":
    main()
