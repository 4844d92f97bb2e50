"""The sampler and the once-per-call weight casts of models.generation: draw() has multinomial's distribution and
never draws a token without probability; generate() under autocast gives the tokens it gave with autocast casting
every Linear weight at every step, and leaves the model's parameters as they were."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn as nn

from alignops.config import LoraConfig
from models import generation
from models.base import HFCausalLM
from models.generation import GenerationConfig, autocast_weights, draw, generate
from models.lora import apply_lora, has_lora, merge_lora
from tests.models.test_generation import tiny_gpt
from tests.models.test_generation_rollout import batch
from tests.support.hf_models import tiny_model

DRAWS = 200_000


def test_draw_has_the_distribution_it_is_given():
    # a zero, a tiny and an unnormalised row: the totals differ, the shares must not
    probs = torch.tensor([[0.5, 0.3, 0.0, 0.199, 0.001], [2.0, 0.0, 0.0, 1.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    ids, unusable = draw(probs.repeat_interleave(DRAWS, dim=0), g)
    ids = ids.view(2, DRAWS)
    assert not unusable.any()
    for row, p in zip(ids, probs / probs.sum(dim=1, keepdim=True), strict=True):
        share = torch.bincount(row, minlength=5).double() / DRAWS
        sigma = (p * (1 - p) / DRAWS).sqrt().double()
        assert ((share - p).abs() <= 5 * sigma + 1e-12).all(), (share, p)  # each share within 5 standard errors
        assert (share[p == 0] == 0).all()  # a token without probability is never drawn


def test_draw_never_lands_past_the_last_token_with_probability(monkeypatch):
    """u * total can round up to the total; without the clamp that lands past the row's last token with mass."""
    # the rounding case cannot be reached through a seed: the uniform draw is pinned at the top of its range instead
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.ones(shape, dtype=kw.get("dtype")))
    probs = torch.tensor([[0.1, 0.2, 0.0, 0.0]])
    assert draw(probs)[0].tolist() == [1]


def test_draw_flags_rows_it_cannot_sample_from():
    probs = torch.tensor([[0.5, 0.5], [float("nan"), 0.5], [0.0, 0.0], [float("inf"), 0.0]])
    ids, unusable = draw(probs)
    assert unusable.tolist() == [False, True, True, True] and ids[1:].tolist() == [0, 0, 0]


def test_sampling_from_broken_logits_raises_and_names_the_rows():
    model = tiny_gpt(seed=3)
    with torch.no_grad():
        model.transformer.ln_f.weight.fill_(float("nan"))  # every row's logits NaN
    ids, mask = batch()
    with pytest.raises(ValueError, match=r"sampling: the logits of 6 row\(s\) \[0, 1, 2, 3, 4, 5\] were NaN"):
        generate(model, ids, mask, GenerationConfig(max_new_tokens=4, do_sample=True, seed=0))


def lora_gpt():
    model = apply_lora(tiny_gpt(seed=3), LoraConfig(r=4, alpha=8))  # base frozen: autocast does not cache it
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)  # adapters that change the output
    return model


def lora_llama():
    model = HFCausalLM(tiny_model("llama", seed=1))
    return apply_lora(model, LoraConfig(r=4, alpha=8))


DECODING = {
    "greedy": dict(),
    "sampled": dict(do_sample=True, temperature=0.8, top_p=0.95, seed=4),
    "beam": dict(num_beams=3),
}


def plain_gpt():
    return tiny_gpt(seed=3).requires_grad_(False)  # frozen, as a reference: autocast would cast it at every step


def trained_gpt():
    return tiny_gpt(seed=3)  # trainable, as PPO's policy: Lightning's autocast (cache off) cast it at every step


@pytest.mark.parametrize(
    "make", [plain_gpt, trained_gpt, lora_gpt, lora_llama], ids=["frozen gpt", "trained gpt", "lora gpt", "lora llama"]
)
@pytest.mark.parametrize("name", list(DECODING))
def test_under_autocast_the_tokens_are_the_merged_models_with_a_cast_per_step(monkeypatch, make, name):
    """generate() casts the frozen weights once and folds LoRA adapters into them: the tokens are those autocast
    gives the merged model (merge_lora) casting at every step."""
    model = make()
    ids, mask = batch()
    ids = ids % 60 + 1  # inside both vocabularies, no pad
    config = GenerationConfig(max_new_tokens=12, eos_token_id=7, **DECODING[name])
    merged = merge_lora(copy.deepcopy(model)).requires_grad_(False) if has_lora(model) else model
    with torch.autocast("cpu", torch.bfloat16):
        got = generate(model, ids, mask, config)
        # the oracle is generate() as it was before the casts: the same code with autocast_weights a no-op
        monkeypatch.setattr(generation, "autocast_weights", lambda model, **kw: contextlib.nullcontext())
        want = generate(merged, ids, mask, config)  # autocast casts every weight at every step
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_the_merged_cast_leaves_the_adapters_on_and_trainable():
    model = lora_gpt()
    layer = model.transformer.h[0].attn.c_attn
    before = {name: p for name, p in model.named_parameters()}
    with torch.autocast("cpu", torch.bfloat16), autocast_weights(model, merge_lora=True):
        assert layer.disable_adapters and layer.get_base_layer().weight.dtype == torch.bfloat16
    assert not layer.disable_adapters and not layer.merged
    assert {name: p for name, p in model.named_parameters()} == before
    assert all(p.requires_grad == ("lora_" in name) for name, p in model.named_parameters())


def test_the_casts_last_for_the_block_and_the_parameters_come_back():
    model = lora_gpt()
    before = {name: (p, p.dtype) for name, p in model.named_parameters()}
    frozen = model.transformer.h[0].attn.c_attn.base_layer  # a peft-wrapped Linear's frozen base
    assert not frozen.weight.requires_grad
    adapter = model.transformer.h[0].attn.c_attn.lora_A["default"]
    with torch.autocast("cpu", torch.bfloat16), autocast_weights(model):
        assert frozen.weight.dtype == torch.bfloat16
        assert model.lm_head.weight.dtype == torch.bfloat16
        # a trainable weight stays itself: autocast caches its casts, and a copy would get no gradient
        assert adapter.weight is before["transformer.h.0.attn.c_attn.lora_A.default.weight"][0]
    with torch.autocast("cpu", torch.bfloat16), autocast_weights(model, keep=[model.lm_head]):
        assert frozen.weight.dtype == torch.bfloat16 and model.lm_head.weight.dtype == torch.float32
        assert model.transformer.wte.weight.dtype == torch.float32  # the embedding keeps the tied original
        assert model.transformer.ln_f.weight.dtype == torch.float32  # norms run in float32 under autocast
    after = {name: (p, p.dtype) for name, p in model.named_parameters()}
    assert after.keys() == before.keys()
    assert all(after[n][0] is before[n][0] and after[n][1] == before[n][1] for n in before)
    assert model.lm_head.weight is model.transformer.wte.weight  # the tie holds

    with pytest.raises(RuntimeError, match="inside"), torch.autocast("cpu", torch.bfloat16), autocast_weights(model):
        raise RuntimeError("inside")
    assert all(p is before[n][0] and p.dtype == torch.float32 for n, p in model.named_parameters())


def test_generate_reads_a_trained_models_weights_as_one_cast_per_call():
    """Lightning's bf16-mixed autocast keeps no cast cache, so a trained policy's weights were cast at every token:
    generate() swaps in one bf16 cast per call, and the Parameters come back after it."""
    model = trained_gpt()
    layer = model.transformer.h[0].mlp.c_fc
    original = layer.weight
    seen = []  # (dtype, identity) of the weight each forward of the layer reads
    hook = layer.register_forward_pre_hook(lambda m, args: seen.append((m.weight.dtype, id(m.weight))))
    ids, mask = batch()
    with torch.autocast("cpu", torch.bfloat16, cache_enabled=False):
        generate(model, ids % 60 + 1, mask, GenerationConfig(max_new_tokens=5))
    hook.remove()
    assert len(seen) == 5  # the prompt's forward and 4 decoding steps
    assert {dtype for dtype, _ in seen} == {torch.bfloat16} and len({ident for _, ident in seen}) == 1
    assert layer.weight is original and original.requires_grad


def test_trainable_weights_are_cast_for_a_no_grad_block_only():
    model = lora_gpt()
    adapter = model.transformer.h[0].attn.c_attn.lora_A["default"]
    original = adapter.weight
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16), autocast_weights(model, trainable=True):
        assert adapter.weight.dtype == torch.bfloat16  # decoding: no gradient to cut off, no step inside the block
    assert adapter.weight is original and original.requires_grad
    with pytest.raises(RuntimeError, match="only under no_grad"), autocast_weights(model, trainable=True):
        pass


def test_outside_autocast_nothing_is_cast():
    model = tiny_gpt()
    with autocast_weights(model):
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(m.weight.dtype == torch.float32 for m in model.modules() if isinstance(m, nn.Linear))
