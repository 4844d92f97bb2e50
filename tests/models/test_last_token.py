"""A reward read at the last real token (models.heads.last_token + ScalarHead) on either kind of base is the same
for a text alone, in a left-padded batch and in a right-padded batch."""

from __future__ import annotations

import pytest
import torch

from models.base import HFCausalLM
from models.gpt import GPT, GPTConfig
from models.heads import ScalarHead, last_token
from tests.support.hf_models import SHAPES, VOCAB, tiny_model

LENGTHS = (5, 2, 7)
PAD = 1  # any id: the attention mask hides padding


def _model(kind: str) -> torch.nn.Module:
    if kind == "gpt":
        torch.manual_seed(0)
        return GPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    return HFCausalLM(tiny_model(kind))


def _batch(rows: list[torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), PAD)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(T - len(r), T) if side == "left" else slice(0, len(r))
        ids[i, span], mask[i, span] = r, 1
    return ids, mask


@pytest.mark.parametrize("kind", ("gpt", *SHAPES))
def test_reward_at_last_real_token_whatever_the_padding_side(kind: str) -> None:
    model = _model(kind)
    torch.manual_seed(1)
    head = ScalarHead(model.hidden_size)
    g = torch.Generator().manual_seed(2)
    rows = [torch.randint(3, VOCAB, (n,), generator=g) for n in LENGTHS]

    def reward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return head(last_token(model.hidden_states(ids, attention_mask=mask), mask))

    with torch.no_grad():
        alone = torch.cat([reward(r[None], torch.ones(1, len(r), dtype=torch.long)) for r in rows])
        for side in ("left", "right"):
            ids, mask = _batch(rows, side)
            torch.testing.assert_close(reward(ids, mask), alone, atol=1e-5, rtol=1e-4)
        # reading the last position instead would be wrong on right padding: the check can fail
        ids, mask = _batch(rows, "right")
        naive = head(model.hidden_states(ids, attention_mask=mask)[:, -1])
    assert not torch.allclose(naive, alone, atol=1e-3)
