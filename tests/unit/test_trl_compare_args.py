"""bench/trl_compare.py's --precision auto: bf16 only where the CPU has native bf16 (`make bench-trl` runs the real
model with it; on a CPU without AVX512-BF16/AMX, bf16 is emulated at about 1 % of fp32's matmul speed)."""

from __future__ import annotations

import pytest

from alignops import precision
from bench.trl_compare import parse_args


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda flags=None: native)
    assert parse_args(["--base", "smollm2", "--precision", "auto"]).precision == expected


def test_a_named_precision_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda flags=None: False)
    assert parse_args(["--precision", "bf16"]).precision == "bf16"
    assert parse_args([]).precision == "fp32"
