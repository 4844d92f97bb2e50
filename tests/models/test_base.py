"""models.base: the own GPT and tiny random transformers models (Llama, Qwen2, GPT-2 shapes) behind one
interface; logits equal transformers' own, cached decoding equals uncached, save/load round-trips."""

from __future__ import annotations

import pytest
import torch

from models.base import CausalLM, HFCausalLM
from models.generation import GenerationConfig, generate
from models.gpt import GPT, GPTConfig
from tests.support.hf_models import SHAPES, VOCAB, tiny_model


def _left_padded(B: int = 3, T: int = 7, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :2] = 0  # row 1 is left-padded by 2, row 2 by 4
    mask[2, :4] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("shape", SHAPES)
def test_logits_equal_transformers_own(shape: str) -> None:
    hf = tiny_model(shape)
    model = HFCausalLM(hf)
    assert isinstance(model, CausalLM)
    ids, mask = _left_padded()
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        theirs = hf(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real])
    assert ours.shape == (3, 7, VOCAB) and model.vocab_size == VOCAB and model.max_positions == 64
    assert model.hidden_states(ids, attention_mask=mask).shape == (3, 7, model.hidden_size) and model.hidden_size == 32


@pytest.mark.parametrize("shape", SHAPES)
def test_left_padding_does_not_change_a_row(shape: str) -> None:
    model = HFCausalLM(tiny_model(shape))
    ids, mask = _left_padded()
    with torch.no_grad():
        padded = model.hidden_states(ids, attention_mask=mask)[2, 4:]
        alone = model.hidden_states(ids[2:, 4:])[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)


def _greedy_without_cache(model, ids: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """The reference: a full forward pass over the whole sequence for every new token."""
    for _ in range(n):
        with torch.no_grad():
            logits = model(ids, attention_mask=mask)[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return ids


@pytest.mark.parametrize("shape", [*SHAPES, "own-gpt"])
def test_generation_with_cache_equals_without(shape: str) -> None:
    if shape == "own-gpt":
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=32)).eval()
    else:
        model = HFCausalLM(tiny_model(shape))
    assert isinstance(model, CausalLM)
    ids, mask = _left_padded()
    cached, lengths = generate(model, ids, mask, GenerationConfig(max_new_tokens=6))
    assert lengths.tolist() == [6, 6, 6]
    assert torch.equal(cached, _greedy_without_cache(model, ids, mask, 6))


@pytest.mark.parametrize("shape", SHAPES)
def test_beam_search_and_sampling_run_on_hf(shape: str) -> None:
    model = HFCausalLM(tiny_model(shape))
    ids, mask = _left_padded()
    beams, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=4, num_beams=3))
    sampled, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=4, do_sample=True, top_p=0.9, seed=0))
    again, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=4, do_sample=True, top_p=0.9, seed=0))
    assert beams.shape == (3, 11) and torch.equal(sampled, again)
    assert torch.equal(beams[:, :7], ids)


def test_save_and_load_round_trip(tmp_path) -> None:
    model = HFCausalLM(tiny_model("llama"))
    model.save(tmp_path / "m")
    loaded = HFCausalLM.from_folder(tmp_path / "m").eval()
    ids, mask = _left_padded()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, attention_mask=mask), model(ids, attention_mask=mask))


def test_a_model_without_an_output_projection_is_refused() -> None:
    from transformers import BertConfig, BertModel

    encoder = BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64))  # fmt: skip
    with pytest.raises(ValueError, match="not a causal LM"):
        HFCausalLM(encoder)


def _shared_rows(extra: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded rows: prompt A (5 tokens) under three responses, one of them empty; prompt B (3 tokens) under two;
    a row whose prompt nobody shares. shared = each row's prompt length. Padded to `extra` columns past the longest
    row: the longest prompt (5) plus the longest response (6) is 11, 2 more than the longest row."""
    g = torch.Generator().manual_seed(3)
    a, b, c = (torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (5, 3, 4))
    r = [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (4, 2, 6, 1)]
    rows = [a + r[0], a + r[1], a, b + r[2], b + r[3], c + r[1]]
    T = max(map(len, rows)) + extra
    ids = torch.tensor([row + [0] * (T - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (T - len(row)) for row in rows])
    return ids, mask, torch.tensor([5, 5, 5, 3, 3, 4])


@pytest.mark.parametrize("shape", ["gpt", *SHAPES])
def test_shared_prefixes_run_once_with_the_states_and_gradients_of_one_forward(shape: str) -> None:
    """Each distinct prompt runs once (3 prefix rows, not 6), and every row's states from its start on equal a plain
    forward's, as do the gradients (a prefix's gradient sums over the rows that read it)."""
    from models.base import shared_prefix_hidden_states

    torch.manual_seed(0)
    if shape == "gpt":
        model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=32)).eval()
    else:
        model = HFCausalLM(tiny_model(shape))
    ids, mask, shared = _shared_rows()
    embed = model.transformer.wte if shape == "gpt" else model.model.get_input_embeddings()
    seen = []
    hook = embed.register_forward_hook(lambda _m, args, _out: seen.append(tuple(args[0].shape)))
    hidden, suffix_mask, start = shared_prefix_hidden_states(model, ids, mask, shared)
    hook.remove()
    # prefixes: A and B's first 5 / 3 tokens and C's (A's empty-response row keeps its last prompt token apart, so its
    # prefix is A's first 4: a group of its own), left-padded to 5; then all 6 rows' remaining tokens
    assert seen == [(4, 5), (6, hidden.size(1))]
    assert start.tolist() == [5, 5, 4, 3, 3, 4]
    _assert_one_forwards(model, ids, mask, hidden, suffix_mask, start)


def _assert_one_forwards(model, ids, mask, hidden, suffix_mask, start) -> None:
    """shared_prefix_hidden_states' states and their gradients equal one plain forward's at the same positions."""
    torch.manual_seed(1)
    weight = torch.randn(hidden.size(-1))
    (hidden * weight).sum(-1).mul(suffix_mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    full = model.hidden_states(ids, attention_mask=mask)
    cols = start.unsqueeze(1) + torch.arange(hidden.size(1))
    picked = full.gather(1, cols.clamp(max=ids.size(1) - 1).unsqueeze(-1).expand(-1, -1, full.size(-1)))
    real = suffix_mask.bool()
    assert real.sum() == mask.sum() - start.sum()
    torch.testing.assert_close(hidden[real], picked[real], atol=1e-5, rtol=1e-4)
    (picked * weight).sum(-1).mul(suffix_mask).sum().backward()
    assert grads and grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("shape", ["gpt", "llama"])
def test_rows_longer_padded_than_the_batch_still_share_when_that_runs_fewer_positions(shape: str) -> None:
    """The longest prompt and the longest response in different rows: the left-padded prefixes plus the
    right-padded rest (5 + 5) are longer than the rows (7), yet 2 x 5 + 9 x 5 positions are fewer than 9 x 7."""
    from models.base import shared_prefix_hidden_states

    torch.manual_seed(0)
    if shape == "gpt":
        model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=10)).eval()
    else:
        model = HFCausalLM(tiny_model(shape))
    g = torch.Generator().manual_seed(5)
    a, b = torch.randint(3, VOCAB, (5,), generator=g).tolist(), torch.randint(3, VOCAB, (2,), generator=g).tolist()
    rows = [a + torch.randint(3, VOCAB, (1 + i % 2,), generator=g).tolist() for i in range(8)]
    rows.append(b + torch.randint(3, VOCAB, (5,), generator=g).tolist())
    ids = torch.tensor([row + [0] * (7 - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (7 - len(row)) for row in rows])
    hidden, suffix_mask, start = shared_prefix_hidden_states(model, ids, mask, torch.tensor([5] * 8 + [2]))
    assert hidden.shape[:2] == (9, 5) and start.tolist() == [5] * 8 + [2]
    _assert_one_forwards(model, ids, mask, hidden, suffix_mask, start)


def test_nothing_shared_is_one_plain_forward() -> None:
    """Distinct prompts, no prompts, a padded prefix + rest longer than the backbone's positions (block_size 9
    against 5 + 6), or sharing that would run as many positions as the rows: one plain forward."""
    from models.base import shared_prefix_hidden_states

    model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=16, block_size=9)).eval()
    ids, mask, shared = _shared_rows(extra=0)
    hidden, out_mask, start = shared_prefix_hidden_states(model, ids, mask, shared)
    assert hidden.shape == (6, 9, 16) and torch.equal(out_mask, mask) and start.tolist() == [0] * 6
    roomy = GPT(GPTConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=16, block_size=32)).eval()
    hidden, out_mask, start = shared_prefix_hidden_states(roomy, ids, mask, shared)
    assert hidden.shape == (6, 9, 16) and start.tolist() == [0] * 6  # 4 x 5 + 6 x 6 positions against 6 x 9
    rows = [0, 3, 5]  # three different prompts
    for prefix_len in (shared[rows], torch.zeros(3, dtype=torch.long)):
        hidden, out_mask, start = shared_prefix_hidden_states(model, ids[rows], mask[rows], prefix_len)
        assert hidden.shape == (3, 9, 16) and torch.equal(out_mask, mask[rows]) and start.tolist() == [0] * 3
