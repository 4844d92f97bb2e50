"""alignops.precision: `precision: auto` gives bf16 autocast on a CPU with native bf16 and on a bf16 GPU, fp32
otherwise; the choice really trains under Lightning (bf16 matmuls, fp32 weights)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from alignops.precision import (
    BF16_MIXED,
    FP32,
    cpu_flags,
    cpu_supports_bf16,
    inference_autocast,
    inference_precision,
    resolve_precision,
)

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\nbogomips\t: 4000\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16\n"


def test_cpu_flags_and_bf16_support() -> None:
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(SAPPHIRE_RAPIDS)
    assert cpu_supports_bf16(cpu_flags(SAPPHIRE_RAPIDS)) is True
    assert cpu_supports_bf16(cpu_flags(SKYLAKE)) is False  # AVX512 alone: bf16 is emulated
    assert cpu_supports_bf16(cpu_flags(GRAVITON3)) is False  # ARM bf16 is not claimed
    assert cpu_flags("model name : x\n") == frozenset()
    assert isinstance(cpu_supports_bf16(), bool)  # this machine's /proc/cpuinfo parses


@pytest.mark.parametrize(
    ("accelerator", "cuda", "cuda_bf16", "cpu_bf16", "expected"),
    [
        ("cpu", False, None, True, BF16_MIXED),
        ("cpu", False, None, False, FP32),
        ("auto", False, None, True, BF16_MIXED),
        ("cpu", True, True, False, FP32),  # accelerator cpu: the CPU decides even with a GPU present
        ("auto", True, True, False, BF16_MIXED),
        ("gpu", True, False, True, FP32),
    ],
)
def test_auto_precision(accelerator: str, cuda: bool, cuda_bf16: bool | None, cpu_bf16: bool, expected: str) -> None:
    for requested in (None, "auto"):
        assert resolve_precision(requested, accelerator, cuda, cuda_bf16, cpu_bf16) == expected


def test_an_explicit_precision_is_kept() -> None:
    assert resolve_precision("16-mixed", "cpu", cpu_bf16=True) == "16-mixed"
    assert resolve_precision(FP32, "gpu", cuda_available=True, cuda_bf16=True) == FP32


class _Probe(L.LightningModule):
    """Records the dtype its matmul computes in and its weight's dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)
        self.seen: list[tuple[torch.dtype, torch.dtype]] = []

    def training_step(self, batch, batch_idx):
        out = self.linear(batch[0])
        self.seen.append((out.dtype, self.linear.weight.dtype))
        return out.float().pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_lightning_trains_in_the_chosen_precision(cpu_bf16: bool, tmp_path) -> None:
    probe = _Probe()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 8)), batch_size=2)
    trainer = L.Trainer(
        accelerator="cpu", precision=resolve_precision("auto", "cpu", cpu_bf16=cpu_bf16), max_steps=2,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(probe, data)
    assert probe.seen == [(torch.bfloat16 if cpu_bf16 else torch.float32, torch.float32)] * 2


def _matmul_dtype() -> torch.dtype:
    return torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4)).dtype


@pytest.mark.parametrize(
    ("requested", "cpu_bf16", "expected"),
    [
        (None, True, torch.bfloat16),  # auto on a CPU with native bf16: bf16 autocast, as training
        ("auto", False, torch.float32),  # auto on a CPU without it: fp32
        (FP32, True, torch.float32),  # fp32 asked for: fp32 even where bf16 is fast
        (BF16_MIXED, False, torch.bfloat16),  # bf16 asked for: bf16 even where it is emulated
        ("16-mixed", True, torch.float32),  # fp16 autocast on a CPU is emulated: fp32
    ],
)
def test_inference_runs_at_the_training_precision(requested, cpu_bf16: bool, expected: torch.dtype) -> None:
    with inference_autocast(requested, "cpu", cuda_available=False, cpu_bf16=cpu_bf16):
        assert _matmul_dtype() == expected
    assert _matmul_dtype() == torch.float32  # and only inside
    named = inference_precision(requested, "cpu", cuda_available=False, cpu_bf16=cpu_bf16)  # what runs tag
    assert named == (BF16_MIXED if expected == torch.bfloat16 else FP32)


def test_inference_autocast_on_a_gpu_follows_the_gpu() -> None:
    """The CUDA path as far as a CPU machine can check it: the autocast it would enter, not entered here."""
    bf16 = inference_autocast(None, "cuda", cuda_available=True, cuda_bf16=True)
    assert isinstance(bf16, torch.autocast) and (bf16.device, bf16.fast_dtype) == ("cuda", torch.bfloat16)
    fp16 = inference_autocast("16-mixed", "cuda", cuda_available=True)
    assert isinstance(fp16, torch.autocast) and fp16.fast_dtype == torch.float16
    assert not isinstance(inference_autocast(None, "cuda", cuda_available=True, cuda_bf16=False), torch.autocast)


def test_an_int8_model_runs_without_autocast() -> None:
    """int8 kernels take fp32 activations only: a pass that runs one stays fp32 (the failure it avoids is real)."""
    from models.compression import quantize_int8
    from models.gpt import GPT, GPTConfig

    gpt = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    int8 = quantize_int8(gpt)
    ids = torch.randint(64, (2, 8), generator=torch.Generator().manual_seed(0))
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="BFloat16"), bf16:
        int8(ids)
    assert inference_precision(BF16_MIXED, "cpu", gpt, cpu_bf16=True) == BF16_MIXED
    assert inference_precision(BF16_MIXED, "cpu", gpt, int8, cpu_bf16=True) == FP32
    with torch.inference_mode(), inference_autocast(BF16_MIXED, "cpu", int8, cpu_bf16=True):
        assert int8(ids).dtype == torch.float32
