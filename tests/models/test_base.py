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
