"""models.base.math_attention_fits and attention_kernel: on CPU, a training forward's attention runs as plain
matmuls (the GPT's plain_attention, SDPA's math backend for a Hugging Face model; their backward is faster than CPU
flash attention's), and so does a decoding step (one query); scoring, prefill, GPUs and attention too big for the
memory bound keep the fused kernel. The states and gradients are the fused kernel's."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

import models.gpt as gpt_module
from models import base
from models.base import HFCausalLM, attention_kernel
from models.gpt import GPT, GPTConfig
from tests.support.hf_models import SHAPES, tiny_model

FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
SOFTMAX_BACKWARD = torch.ops.aten._softmax_backward_data.default  # math attention is composite: its parts show


class Ops(TorchDispatchMode):
    """The aten ops a block runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func)
        return func(*args, **(kwargs or {}))


def _fused(kernel) -> bool:
    return isinstance(kernel, contextlib.nullcontext)


def test_the_kernel_is_chosen_by_device_grad_and_size() -> None:
    cpu = torch.device("cpu")
    with torch.enable_grad():
        assert not _fused(attention_kernel(8, 4, 64, 64, cpu))  # CPU training: math
        assert _fused(attention_kernel(8, 4, 64, 64, torch.device("cuda")))  # GPUs: the fused kernels win
        assert _fused(attention_kernel(16, 9, 2048, 2048, cpu))  # probabilities over MATH_ATTENTION_BYTES
        keys = base.MATH_ATTENTION_BYTES // 4  # float32 probabilities of 1 x 1 x 1 x keys
        assert not _fused(attention_kernel(1, 1, 1, keys, cpu)) and _fused(attention_kernel(1, 1, 1, keys + 1, cpu))
    with torch.no_grad():
        assert _fused(attention_kernel(8, 4, 64, 64, cpu))  # scoring, a prompt's prefill: no backward to save
        assert not _fused(attention_kernel(8, 4, 1, 64, cpu))  # a decoding step: one query, math is faster
        assert _fused(attention_kernel(8, 4, 1, 64, torch.device("cuda")))
        assert _fused(attention_kernel(1, 1, 1, keys + 1, cpu))  # the size bound holds here too


def _states_and_grads(model, ids, mask) -> tuple[torch.Tensor, list[torch.Tensor], set]:
    model.zero_grad()
    with Ops() as ops:
        hidden = model.hidden_states(ids, attention_mask=mask)
        (hidden.float() ** 2).mean().backward()
    return hidden.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None], ops.seen


@pytest.mark.parametrize("shape", ("gpt", *SHAPES))
def test_training_forwards_skip_flash_attention_with_the_same_states_and_gradients(shape: str, monkeypatch) -> None:
    torch.manual_seed(0)
    if shape == "gpt":
        model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32))
    else:
        model = HFCausalLM(tiny_model(shape))
    ids = torch.randint(1, 64, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row: the masked path too
    with torch.no_grad(), Ops() as ops:
        model.hidden_states(ids, attention_mask=mask)
    assert FLASH in ops.seen  # generation and scoring keep the fused kernel

    hidden, grads, seen = _states_and_grads(model, ids, mask)
    assert FLASH not in seen and SOFTMAX_BACKWARD in seen

    # the oracle: training as it ran before, the fused kernel forward and backward
    monkeypatch.setattr(gpt_module, "math_attention_fits", lambda *a: False)  # the GPT: SDPA's default, flash
    monkeypatch.setattr(base, "attention_kernel", lambda *a: sdpa_kernel(SDPBackend.FLASH_ATTENTION))
    oracle, oracle_grads, seen = _states_and_grads(model, ids, mask)
    assert FLASH in seen and len(grads) == len(oracle_grads) > 0
    real = mask.bool()
    torch.testing.assert_close(hidden[real], oracle[real], atol=1e-5, rtol=1e-4)
    for ours, theirs in zip(grads, oracle_grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


class AttentionUpcasts(TorchDispatchMode):
    """How many (batch, heads, tokens, head_dim) tensors are cast to float32: SDPA's math backend upcasting q, k, v."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and out.dim() == 4 and out.dtype == torch.float32:
            self.count += 1
        return out


def test_bf16_attention_kernel_is_not_upcast_and_the_flag_is_put_back(monkeypatch) -> None:
    # Under bf16 autocast the math backend cast q, k, v to float32 and autocast cast its matmuls back to bf16:
    # copies that bought no precision, 12 % of the small GPT's bf16 step. The GPT now computes the math itself
    # (plain_attention); a Hugging Face model runs SDPA's math backend with the upcast off (models.base).
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32))
    ids = torch.randint(64, (3, 12))
    before = torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed()
    with AttentionUpcasts() as casts, torch.autocast("cpu", torch.bfloat16):
        model.hidden_states(ids).float().sum().backward()
    assert casts.count == 0
    assert torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed() == before
    # the control: the math backend as it runs by default (what attention_kernel chose before), which the test sees
    monkeypatch.setattr(gpt_module, "math_attention_fits", lambda *a: False)
    with AttentionUpcasts() as casts, torch.autocast("cpu", torch.bfloat16), sdpa_kernel(SDPBackend.MATH):
        model.hidden_states(ids).float().sum().backward()
    assert casts.count >= 3 * 2  # at least q, k, v of each layer


def test_plain_attention_is_sdpas_attention() -> None:
    """models.base.plain_attention against SDPA in float32: causal (no mask), a padding mask, and a decoding step
    (one query against cached keys); dropout, when asked for, changes the output."""
    from models.base import plain_attention
    from models.gpt import attention_bias

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    torch.testing.assert_close(plain_attention(q, k, v, None), F.scaled_dot_product_attention(q, k, v, is_causal=True))
    padding = torch.ones(2, 7, dtype=torch.long)
    padding[0, :3] = 0  # a left-padded row: its padding queries see only themselves
    allowed = attention_bias(7, 0, padding, q.device)
    torch.testing.assert_close(
        plain_attention(q, k, v, allowed), F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    )
    step = attention_bias(1, 6, padding, q.device)  # the 7th token's query against 6 cached positions and itself
    torch.testing.assert_close(
        plain_attention(q[:, :, -1:], k, v, step), F.scaled_dot_product_attention(q[:, :, -1:], k, v, attn_mask=step)
    )
    torch.manual_seed(1)
    dropped = plain_attention(q, k, v, None, dropout_p=0.5)
    assert not torch.allclose(dropped, plain_attention(q, k, v, None))


def test_decoding_steps_skip_the_fused_kernel() -> None:
    """One query per row: the fused kernel's fixed cost dominates, so a decoding step runs the math (the GPT's
    plain_attention); the prompt's prefill (many queries, no grad) keeps the fused kernel, once per layer."""
    from models.generation import GenerationConfig, generate

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    ids = torch.randint(1, 64, (3, 6))
    calls = []

    class FusedCalls(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is FLASH:
                calls.append(args[0].size(-2))  # the queries of each fused call
            return func(*args, **(kwargs or {}))

    with FusedCalls():
        generate(model, ids, torch.ones_like(ids), GenerationConfig(max_new_tokens=4))
    assert calls == [6, 6]  # the prefill of each of the 2 layers; none of the 3 decoding steps
