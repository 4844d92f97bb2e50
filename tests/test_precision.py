"""alignops.precision: `precision: auto` gives bf16 autocast on a CPU with native bf16 and on a bf16 GPU, fp32
otherwise; the choice really trains under Lightning (bf16 matmuls, fp32 weights)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from alignops.precision import BF16_MIXED, FP32, cpu_flags, cpu_supports_bf16, resolve_precision

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
