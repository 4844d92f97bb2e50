"""Frozen weights cast to bf16 once for a whole fit (models.generation.CastCache, BackboneModule.frozen_weights_cast):
the same training as autocast's cast at every forward, with the casts made once."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch.utils.data import DataLoader

from alignops.config import LoraConfig, OptimConfig
from models import generation
from models.dpo import DPOModel
from models.generation import CastCache, autocast_weights
from models.gpt import GPT, GPTConfig
from models.lm import BackboneModule, LMModule
from models.lora import apply_lora
from models.reward import RewardModel
from tests.models.test_dpo import loader, pairs

CONFIG = GPTConfig(vocab_size=16, block_size=24, n_layer=2, n_head=2, n_embd=32)
LORA = {"r": 4, "alpha": 8}
OPTIM = OptimConfig(lr=1e-2, warmup_steps=0)


def test_a_cast_is_reused_until_its_weight_changes() -> None:
    model = apply_lora(GPT(CONFIG), LoraConfig(r=4, alpha=8))
    frozen = model.transformer.h[0].attn.c_attn.base_layer
    cache = CastCache()
    with torch.autocast("cpu", torch.bfloat16), autocast_weights(model, cache=cache):
        first = frozen.weight
    with torch.autocast("cpu", torch.bfloat16), autocast_weights(model, cache=cache):
        assert frozen.weight is first  # the second block swaps the same cast in
    assert frozen.weight.dtype == torch.float32 and len(cache) > 0
    with torch.no_grad():
        frozen.weight.add_(1.0)  # as load_state_dict's in-place copy does
    changed = frozen.weight.detach().clone()
    with torch.autocast("cpu", torch.bfloat16), autocast_weights(model, cache=cache):
        assert frozen.weight is not first
        assert torch.equal(frozen.weight, changed.bfloat16())  # cast anew, from the new values
    with torch.autocast("cpu", torch.float16), autocast_weights(model, cache=cache):
        assert frozen.weight.dtype == torch.float16  # another autocast dtype: another cast


def reward_module() -> RewardModel:
    torch.manual_seed(0)
    return RewardModel.from_base(GPT(CONFIG), lora=LORA, max_steps=4, optim=OPTIM)


def dpo_module() -> DPOModel:
    torch.manual_seed(0)
    return DPOModel.from_base(GPT(CONFIG), lora=LORA, max_steps=4, optim=OPTIM)


@pytest.mark.parametrize("make", [reward_module, dpo_module], ids=["reward", "dpo"])
def test_a_bf16_fit_casts_each_frozen_weight_once_and_trains_as_before(make, cpu_trainer, monkeypatch) -> None:
    data = loader(pairs(16, seed=1), batch_size=4)
    casts = []
    real_cast = generation._cast
    monkeypatch.setattr(generation, "_cast", lambda p, dtype: casts.append(id(p)) or real_cast(p, dtype))

    def fit(module):
        cpu_trainer(max_steps=4, precision="bf16-mixed", num_sanity_val_steps=0).fit(module, data, data)
        assert all(p.dtype == torch.float32 for p in module.parameters())  # every original back in place
        assert len(module._frozen_casts) == 0  # the bf16 copies are dropped with the fit
        return {k: v.clone() for k, v in module.state_dict().items()}

    once = fit(module := make())
    frozen = [p for m in module.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters(recurse=False)]
    frozen = {id(p) for p in frozen if not p.requires_grad}
    assert frozen and set(casts) == frozen and len(casts) == len(frozen)  # 4 steps + validation: one cast each
    # the oracle: the same fit with autocast casting every frozen weight at each forward
    monkeypatch.setattr(BackboneModule, "frozen_weights_cast", lambda self: contextlib.nullcontext())
    per_forward = fit(make())
    assert once.keys() == per_forward.keys()
    assert all(torch.equal(once[k], per_forward[k]) for k in once)
    assert any(not torch.equal(once[k], make().state_dict()[k]) for k in once if "lora_B" in k)  # it trained


def test_without_autocast_nothing_is_cast(cpu_trainer, monkeypatch) -> None:
    casts = []
    real_cast = generation._cast
    monkeypatch.setattr(generation, "_cast", lambda p, dtype: casts.append(p) or real_cast(p, dtype))
    module = LMModule.from_base(GPT(CONFIG), lora=LORA, max_steps=2, optim=OPTIM)
    batch = {"input_ids": torch.randint(1, 16, (2, 8)), "labels": torch.randint(1, 16, (2, 8))}
    before = copy.deepcopy(module.state_dict())
    cpu_trainer(max_steps=2).fit(module, DataLoader([batch, batch], batch_size=None))
    assert casts == [] and any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_an_adapters_bf16_input_is_not_cast_to_float32_and_back() -> None:
    """peft casts an adapter's input to the adapter's float32 weights, then autocast casts it back to bf16: inside
    autocast_weights the round trip is left out (forward and backward), with the same output; outside, as before."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Float32Copies(TorchDispatchMode):
        """Records every float32 tensor of x's shape an op makes."""

        def __init__(self, shape) -> None:
            super().__init__()
            self.shape, self.made = shape, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.dtype == torch.float32 and tuple(out.shape) == self.shape:
                self.made += 1
            return out

    torch.manual_seed(0)
    model = apply_lora(GPT(CONFIG), LoraConfig(r=4, alpha=8))
    layer = model.transformer.h[0].attn.c_proj  # reads the attention's output: bf16 under autocast
    x = torch.randn(2, 5, 32, dtype=torch.bfloat16)
    weight = torch.randn(2, 5, 32, dtype=torch.bfloat16)

    def run(block) -> tuple[torch.Tensor, torch.Tensor, int]:
        inp = x.clone().requires_grad_(True)
        with torch.autocast("cpu", torch.bfloat16), block, Float32Copies((2, 5, 32)) as copies:
            out = layer(inp)
            (out * weight).sum().backward()
        return out, inp.grad, copies.made

    peft_cast = run(contextlib.nullcontext())
    with torch.autocast("cpu", torch.bfloat16), autocast_weights(model):
        assert not layer.cast_input_dtype_enabled
    assert layer.cast_input_dtype_enabled  # put back
    ours = run(autocast_weights(model))
    assert peft_cast[2] >= 2 and ours[2] == 0  # peft's cast forward and its gradient's back, then none
    torch.testing.assert_close(ours[:2], peft_cast[:2], atol=0, rtol=0)
    with autocast_weights(model):  # no autocast: nothing changes
        assert layer.cast_input_dtype_enabled
