"""Training precision: what `precision: auto` (or no precision) means on the machine at hand, as a Lightning string.

bf16 autocast ("bf16-mixed": weights, optimizer state and the loss reductions stay fp32) where the hardware has
fast bf16 matmuls: a CUDA GPU that supports bf16, or a CPU with AVX512-BF16 or AMX (on this project's CPU the
bf16 matmul peak is 0.42 TFLOP/s against 0.18 fp32). Full fp32 ("32-true") everywhere else: on a CPU without
those instructions bf16 is emulated and slower than fp32.

    trainer = L.Trainer(accelerator=cfg.accelerator, precision=resolve_precision(cfg.precision, cfg.accelerator))

Model passes outside Lightning (evaluation, the experiment's sampling and scoring, the simulated labeler's samples,
the PPO stage's before/after check) run at the same precision, under inference_autocast:

    with inference_autocast(cfg.trainer.precision, models.device):
        out = generate_responses(...)

A caller that also records the precision resolves it once: precision = inference_precision(...), then
autocast(precision, device).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

AUTO = "auto"
BF16_MIXED, FP32 = "bf16-mixed", "32-true"  # Lightning's precision strings
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of native bf16 matmuls
CPUINFO = Path("/proc/cpuinfo")
GPU_ACCELERATORS = ("auto", "gpu", "cuda")  # accelerator values that run on CUDA when it is available


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (the first `flags` line of /proc/cpuinfo); empty where there is no such file."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:  # not Linux: no flags known, so no bf16 claimed
            return frozenset()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return frozenset(value.split())
    return frozenset()


def cpu_supports_bf16(flags: frozenset[str] | None = None) -> bool:
    """Native bf16 matmuls on this CPU, from its feature flags (/proc/cpuinfo's when None). Not from torch:
    torch.backends.cpu.get_cpu_capability() says "AVX512" on CPUs with and without AVX512-BF16, and oneDNN's
    bf16 check is true on any AVX512 CPU, where it emulates bf16 more slowly than fp32."""
    return bool(CPU_BF16_FLAGS & (cpu_flags() if flags is None else flags))


def resolve_precision(
    requested: str | None,
    accelerator: str = "auto",
    cuda_available: bool | None = None,
    cuda_bf16: bool | None = None,
    cpu_bf16: bool | None = None,
) -> str:
    """The Lightning precision for `requested` (None or "auto": decided here; anything else is returned as is).
    The hardware arguments default to what this machine reports; tests pass them in."""
    if requested not in (None, AUTO):
        return requested
    import torch

    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if accelerator in GPU_ACCELERATORS and cuda_available:
        bf16 = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        chosen, where = (BF16_MIXED, "the GPU supports bf16") if bf16 else (FP32, "the GPU lacks bf16")
    else:
        bf16 = cpu_supports_bf16() if cpu_bf16 is None else cpu_bf16
        chosen, where = (
            (BF16_MIXED, "the CPU has native bf16 (AVX512-BF16/AMX)") if bf16 else (FP32, "the CPU lacks native bf16")
        )
    log.info("precision auto: %s (%s)", chosen, where)
    return chosen


AUTOCAST_DTYPES = {"bf16-mixed": "bfloat16", "bf16-true": "bfloat16", "16-mixed": "float16", "16-true": "float16"}


def inference_precision(requested: str | None, device, *models, **hardware) -> str:
    """The precision a model pass outside Lightning runs at on `device`: `requested` (trainer.precision) resolved
    as training resolves it; fp32 for fp16 on a CPU (emulated there) and wherever one of `models` (the modules the
    pass runs) is an int8 model (it runs as quantized: int8 linears, fp32 elsewhere). hardware: resolve_precision's
    test arguments (cuda_available, cuda_bf16, cpu_bf16). Evaluation runs tag it (tracking.PRECISION_TAG)."""
    import torch

    device = torch.device(device)
    chosen = resolve_precision(requested, "gpu" if device.type == "cuda" else "cpu", **hardware)
    if AUTOCAST_DTYPES.get(chosen) == "float16" and device.type != "cuda":
        return FP32
    from models.compression import is_quantized

    if any(is_quantized(m) for m in models):  # int8 kernels take fp32 activations only: autocast's bf16 is refused
        return FP32
    return chosen if chosen in AUTOCAST_DTYPES else FP32


def inference_autocast(requested: str | None, device, *models, **hardware) -> contextlib.AbstractContextManager:
    """The autocast a model pass outside Lightning runs under (inference_precision, same arguments), so evaluation
    reads a model at the precision it was trained in. bf16 (or fp16 on a GPU): weights stay fp32, matmuls and
    attention run in the low precision (the experiment's sampling and scoring of SmolLM2 ran 1.6x faster than in
    fp32; its KL to the SFT policy moved 4.81 -> 4.80 nats, the SFT model's own per-token KL(fp32 || bf16) was
    0.0014 nats). fp32: none."""
    return autocast(inference_precision(requested, device, *models, **hardware), device)


def autocast(precision: str, device) -> contextlib.AbstractContextManager:
    """The autocast of a precision already resolved (inference_precision's answer) on `device`: for a caller that
    also records the precision, so it is resolved once."""
    import torch

    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype))
