"""SFT packing (alignops.data.loaders.PackedExamples): best-fit-decreasing rows, and the loss of a packed batch is
the loss of the same examples padded, on the project's GPT and on tiny random Llama, Qwen2 and GPT-2 models.

    .venv/bin/python -m pytest tests/data/test_packing.py -q
"""

from __future__ import annotations

import pytest
import torch

from alignops.data.loaders import IGNORE_INDEX, PackedExamples, collate_packed, collate_right_pad
from models.base import packed_segments
from models.lm import LMModule
from tests.models.test_modules_on_bases import BASES, base
from tests.support.hf_models import VOCAB

PAD = 0


def examples(lengths: list[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """One SFT-shaped example per length: random ids, the first third a prompt (not learned)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(2, VOCAB, (n,), generator=g)
        labels = ids.clone()
        labels[: n // 3] = IGNORE_INDEX
        out.append({"input_ids": ids, "labels": labels})
    return out


def test_best_fit_decreasing_rows() -> None:
    # longest first, each into the fullest row it fits: 5 -> r0 (3 left), 4 -> r1 (4 left), 3 -> r0 (full),
    # 3 -> r1 (1 left), 2 -> r2, 1 -> r1 (full)
    packed = PackedExamples(examples([3, 1, 5, 2, 4, 3]), capacity=8)
    assert [[len(e["input_ids"]) for e in row] for row in packed.rows] == [[5, 3], [4, 3, 1], [2]]
    assert packed.fill == pytest.approx(18 / 24)

    row = packed[1]
    assert row["position_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2, 0]
    # each example's first token predicts nothing from the one before it
    assert [row["labels"][i].item() for i in (0, 4, 7)] == [IGNORE_INDEX] * 3

    many = examples(list(torch.randint(4, 40, (200,), generator=torch.Generator().manual_seed(1)).tolist()))
    rows = PackedExamples(many, capacity=64)
    assert all(len(rows[i]["input_ids"]) <= 64 for i in range(len(rows)))
    assert sorted(len(e["input_ids"]) for r in rows.rows for e in r) == sorted(len(e["input_ids"]) for e in many)
    assert rows.fill > 0.95  # against about 0.5 for the same examples padded to 64 in batches

    with pytest.raises(ValueError, match="does not fit rows of 8"):
        PackedExamples(examples([9]), capacity=8)


def test_packed_segments_from_position_ids() -> None:
    assert packed_segments(torch.arange(6)[None]) is None  # one sequence per row: plain causal attention
    segments = packed_segments(torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]))
    assert segments.tolist() == [[0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("shape", BASES)
def test_packed_loss_equals_padded_loss(shape: str) -> None:
    module = LMModule.from_base(base(shape)).eval()
    data = examples([11, 7, 5, 9, 3, 12, 4])
    padded = collate_right_pad(PAD)(data)
    packed_rows = PackedExamples(data, capacity=24)
    packed = collate_packed(PAD)([packed_rows[i] for i in range(len(packed_rows))])
    assert packed["input_ids"].numel() < padded["input_ids"].numel()  # 3 rows of <= 24 against 7 of 12
    assert int(packed["real_tokens"]) == sum(len(e["input_ids"]) for e in data)
    with torch.no_grad():
        loss_padded, n_padded = module.loss(padded)
        loss_packed, n_packed = module.loss({k: v for k, v in packed.items() if k != "real_tokens"})
    assert int(n_packed) == int(n_padded)
    assert loss_packed.item() == pytest.approx(loss_padded.item(), abs=1e-5)

    # the control: without their position ids the same rows attend across examples, and the logits of every
    # example after a row's first change (a mean loss over a random tiny model barely moves)
    with torch.no_grad():
        kept = module(packed["input_ids"], position_ids=packed["position_ids"])
        crossed = module(packed["input_ids"])
    first = packed_rows.rows[0][0]["input_ids"].numel()
    assert torch.allclose(kept[0, :first], crossed[0, :first], atol=1e-5)
    assert (kept[0, first:] - crossed[0, first:]).abs().max().item() > 1e-3
