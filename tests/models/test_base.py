"""models.base: the own GPT and tiny random transformers models (Llama, Qwen2, GPT-2 shapes) behind one
interface; logits equal transformers' own, cached decoding equals uncached, save/load round-trips."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models.base import CausalLM, HFCausalLM
from models.generation import GenerationConfig, generate
from models.gpt import GPT, GPTConfig
from tests.support.hf_models import SHAPES, VOCAB, tiny_model

FUSED = "aten._scaled_dot_product_flash_attention_for_cpu"  # SDPA's fused CPU kernel


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


@pytest.mark.parametrize("shape", ["gpt", *SHAPES, "llama-eager"])
def test_shared_prefixes_run_once_with_the_states_and_gradients_of_one_forward(shape: str) -> None:
    """Each distinct prompt runs once, its rows' rests after it, packed into 2 rows of one forward (not 6 rows), and
    every row's states from its start on equal a plain forward's, as do the gradients (a prefix's gradient sums over
    the rows that read it). Eager attention takes the mask as scores to add, SDPA as booleans."""
    from models.base import shared_prefix_hidden_states

    torch.manual_seed(0)
    if shape == "gpt":
        model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=32)).eval()
    else:
        hf = tiny_model(shape.removesuffix("-eager"))
        if shape.endswith("-eager"):
            hf.set_attn_implementation("eager")
        model = HFCausalLM(hf)
    ids, mask, shared = _shared_rows()
    embed = model.transformer.wte if shape == "gpt" else model.model.get_input_embeddings()
    seen = []
    hook = embed.register_forward_hook(lambda _m, args, _out: seen.append(tuple(args[0].shape)))
    hidden, suffix_mask, start = shared_prefix_hidden_states(model, ids, mask, shared)
    hook.remove()
    # groups: A's 5 tokens + its two responses (4 + 2); A's empty-response row keeps its last prompt token apart, so
    # its prefix is A's first 4, a group of its own (4 + 1); B's 3 + 6 + 1; C's 4 + 2. Packed into rows of at most
    # 2 x 11, longest first: A's and B's (21), then C's and A4's (11)
    assert seen == [(2, 21)]
    assert start.tolist() == [5, 5, 4, 3, 3, 4] and hidden.size(1) == 6
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
def test_a_group_too_long_for_one_packed_row_is_split_and_a_packed_row_may_outgrow_the_positions(shape: str) -> None:
    """A prompt of 5 under 8 responses of 1-2 tokens, rows 7 wide: a packed row holds at most PACK_WIDTH x 7 = 14
    tokens, so the group takes two (5 + 9 and 5 + 3), its prefix repeated; a prompt of 2 under one response of 5
    (2 + 5) fits neither: 3 rows of 14 against 9 of 7. The packed rows are longer than the GPT's 10 positions: only
    positions count."""
    from models.base import PACK_WIDTH, shared_prefix_hidden_states

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
    embed = model.transformer.wte if shape == "gpt" else model.model.get_input_embeddings()
    seen = []
    hook = embed.register_forward_hook(lambda _m, args, _out: seen.append(tuple(args[0].shape)))
    hidden, suffix_mask, start = shared_prefix_hidden_states(model, ids, mask, torch.tensor([5] * 8 + [2]))
    hook.remove()
    assert PACK_WIDTH == 2 and seen == [(3, 14)]
    assert hidden.shape[:2] == (9, 5) and start.tolist() == [5] * 8 + [2]
    _assert_one_forwards(model, ids, mask, hidden, suffix_mask, start)


def test_nothing_shared_is_one_plain_forward() -> None:
    """Distinct prompts, no prompts, or packed rows that would run as many positions as the plain rows (one long
    group widening every packed row): one plain forward."""
    from models.base import shared_prefix_hidden_states

    model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=16, block_size=32)).eval()
    ids, mask, shared = _shared_rows(extra=0)
    rows = [0, 3, 5]  # three different prompts
    for prefix_len in (shared[rows], torch.zeros(3, dtype=torch.long)):
        hidden, out_mask, start = shared_prefix_hidden_states(model, ids[rows], mask[rows], prefix_len)
        assert hidden.shape == (3, 9, 16) and torch.equal(out_mask, mask[rows]) and start.tolist() == [0] * 3
    # one prompt of 1 under two responses of 5 (a packed row of 11) beside three rows of their own, 6 wide:
    # 4 x 11 packed positions against 5 x 6
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, VOCAB, (5, 6), generator=g)
    ids[1, 0] = ids[0, 0]
    mask = torch.ones_like(ids)
    hidden, out_mask, start = shared_prefix_hidden_states(model, ids, mask, torch.ones(5, dtype=torch.long))
    assert hidden.shape == (5, 6, 16) and torch.equal(out_mask, mask) and start.tolist() == [0] * 5


@pytest.mark.parametrize("shape", ["gpt", "llama"])
def test_a_mask_matrix_needs_booleans_and_position_ids_and_no_cache(shape: str) -> None:
    if shape == "gpt":
        model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=16, block_size=8)).eval()
    else:
        model = HFCausalLM(tiny_model(shape))
    ids = torch.randint(3, VOCAB, (2, 4))
    allowed = torch.ones(4, 4, dtype=torch.bool).tril().expand(2, 1, 4, 4)
    positions = torch.arange(4).expand(2, 4)
    with pytest.raises(ValueError, match="boolean"):
        model.hidden_states(ids, attention_mask=allowed.float(), position_ids=positions)
    with pytest.raises(ValueError, match="position_ids"):
        model.hidden_states(ids, attention_mask=allowed)
    with pytest.raises(ValueError, match="KV cache"):
        model.hidden_states(ids, attention_mask=allowed, position_ids=positions, kv_cache=model.new_cache(2, 8))
    with pytest.raises(ValueError, match="past the model's"):
        model.hidden_states(ids, attention_mask=allowed, position_ids=positions + model.max_positions)
    with torch.no_grad():  # a causal mask matrix is the plain causal forward
        torch.testing.assert_close(
            model.hidden_states(ids, attention_mask=allowed, position_ids=positions), model.hidden_states(ids)
        )


def test_a_model_with_a_sliding_window_runs_shared_rows_as_one_plain_forward() -> None:
    """transformers applies a sliding window only to the masks it builds, so a mask matrix would lose it: such a
    model (Mistral's window, here 4 tokens) takes none, and shared rows run as one plain forward."""
    from transformers import AutoModelForCausalLM, MistralConfig

    from models.base import shared_prefix_hidden_states

    torch.manual_seed(0)
    config = MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                           sliding_window=4)  # fmt: skip
    model = HFCausalLM(AutoModelForCausalLM.from_config(config).eval())
    assert not model.mask_matrices and HFCausalLM(tiny_model("llama")).mask_matrices
    ids, mask, shared = _shared_rows()
    with torch.no_grad():
        hidden, out_mask, start = shared_prefix_hidden_states(model, ids, mask, shared)
        assert start.tolist() == [0] * 6 and torch.equal(out_mask, mask)
        torch.testing.assert_close(hidden, model.hidden_states(ids, attention_mask=mask))


class _Ops(TorchDispatchMode):
    """The aten ops a block runs."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("shape", ["llama", "qwen2", "gpt2"])
def test_a_mask_matrix_trains_through_plain_attention_and_scores_through_the_fused_kernel(shape: str) -> None:
    """Under grad on CPU a Hugging Face model reads a mask matrix through plain_attention (a plain softmax, not SDPA
    math's safe softmax nor the fused kernel), grouped-query heads included (llama, qwen2: 2 query heads per
    key/value head); without grad the fused kernel; the same states either way, and the model's attention
    implementation is SDPA again after."""
    model = HFCausalLM(tiny_model(shape))
    ids = torch.randint(3, VOCAB, (2, 6))
    allowed = torch.ones(6, 6, dtype=torch.bool).tril().expand(2, 1, 6, 6)
    positions = torch.arange(6).expand(2, 6)
    with _Ops() as ops:
        trained = model.hidden_states(ids, attention_mask=allowed, position_ids=positions)
    assert "aten._softmax" in ops.names and not {"aten._safe_softmax", FUSED} & ops.names
    assert model.model.config._attn_implementation == "sdpa"
    with torch.no_grad(), _Ops() as ops:
        scored = model.hidden_states(ids, attention_mask=allowed, position_ids=positions)
    assert FUSED in ops.names
    torch.testing.assert_close(trained, scored, atol=1e-5, rtol=1e-4)
