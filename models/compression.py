"""Model compression in plain torch: dynamic int8 quantization, magnitude pruning, and the counts that compare
a compressed GPT with its original (parameters, nonzero share, bytes of weights).

    q = quantize_int8(gpt)                   # a copy; every nn.Linear int8 (CPU inference only)
    tensors = int8_state(q)                  # plain tensors for safetensors; from_int8_state(config, tensors) -> q
    q = quantize_int8(hf)                    # a models.base.HFCausalLM too: a QuantizedHFCausalLM
    hf_from_int8_state(hf_config, int8_state(q))   # its tensors under the transformers model's own names
    pruned, per_matrix = prune_magnitude(gpt, 0.5)   # a copy; each block matrix exactly half zeros
    total, nonzero = count_parameters(pruned)

Quantization is PyTorch's dynamic int8 (fbgemm/x86 kernels): weights int8 with one scale per output channel
(symmetric), activations quantized per call from their observed range, int32 accumulation, fp32 out. The token
and position embeddings stay fp32, so the tied lm_head becomes its own int8 matrix beside the fp32 embedding.
torch.ao.quantization is deprecated in favour of torchao, yet in torch 2.13 it is the fastest int8 path on CPU
(its fbgemm kernels beat torch._int_mm with per-token scales, and int8 weight-only matmul, on this CPU), and
int8_state stores plain int8 values and scales, so a saved model does not depend on that API. Measured with
bench/compression.py (one thread of a 16-core Xeon, torch 2.11): at the small preset's shape greedy decoding
runs 1.4x (batch 1) to 1.7x (batch 8) the fp32 speed, 1.3x with lm_head left fp32, so lm_head is quantized too;
at tiny's width (64) the per-call activation quantization costs more than it saves (0.7-0.8x).

Pruning is unstructured and per matrix: in every Linear weight of the transformer blocks, exactly
round(sparsity * numel) entries of smallest magnitude become zero. Per matrix rather than one global threshold,
because GPT-2's init (and training) gives the residual projections smaller weights: a global threshold would
empty them first. Embeddings (tied to lm_head), biases and LayerNorms are left whole.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch import Tensor

from models.base import HFCausalLM
from models.gpt import GPT, GPTConfig

INT8 = "int8-dynamic"  # the name of this storage/quantization scheme, recorded beside the weights


@contextmanager
def _quiet() -> Iterator[None]:
    # torch 2.13 warns on every use of torch.ao quantization and quantized tensors (deprecated, still supported)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"(?s).*deprecated", category=UserWarning)
        yield


def _dynamic_linear() -> type[nn.Module]:
    import torch.ao.nn.quantized.dynamic as nnqd

    return nnqd.Linear


class QuantizedHFCausalLM(HFCausalLM):
    """A Hugging Face causal LM whose every nn.Linear is dynamic int8 (quantize_int8): the same interface, its
    sizes read from lm_head's features (an int8 Linear's weight is a method, not a tensor). Saved as int8_state
    tensors beside the config (alignops.artifacts), not by save_pretrained, which knows no int8 Linear."""

    @property
    def vocab_size(self) -> int:
        return self.lm_head.out_features

    @property
    def hidden_size(self) -> int:
        return self.lm_head.in_features

    def save(self, folder) -> None:
        raise ValueError("an int8 model is saved as int8_state tensors: alignops.artifacts.save_model writes it")


def _quantized_copy(model: nn.Module) -> nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with _quiet():
        return quantize_dynamic(
            copy.deepcopy(model).cpu().float().eval(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


def quantize_int8(gpt: GPT | HFCausalLM) -> GPT | QuantizedHFCausalLM:
    """A copy of gpt with every nn.Linear (blocks and lm_head) dynamically quantized to int8, in eval mode.

    A Hugging Face model's transformers module is quantized and wrapped again (QuantizedHFCausalLM): its
    backbone and lm_head are then the quantized modules. Architectures whose projections are not nn.Linear (GPT-2's
    Conv1D) keep those in fp32. CPU only: the quantized kernels have no CUDA implementation."""
    if is_quantized(gpt):
        raise ValueError("the model is already int8-quantized; quantize its fp32 original instead")
    if isinstance(gpt, HFCausalLM):
        return QuantizedHFCausalLM(_quantized_copy(gpt.model))
    return _quantized_copy(gpt)


def is_quantized(gpt: nn.Module) -> bool:
    linear = _dynamic_linear()
    return any(isinstance(m, linear) for m in gpt.modules())


def int8_state(gpt: GPT) -> dict[str, Tensor]:
    """The weights of a quantize_int8 model as plain tensors (no quantized dtypes, no pickled packed params):
    `<linear>.weight` int8 (out, in), `.weight_scale` float64 (out,), `.weight_zero_point` int64 (out,),
    `.bias` fp32; every other parameter or buffer as it is. A Hugging Face model's under the transformers
    module's own names (its wrapper holds the same modules twice: backbone and model.model)."""
    if isinstance(gpt, HFCausalLM):
        gpt = gpt.model
    linear = _dynamic_linear()
    quantized = {name: m for name, m in gpt.named_modules() if isinstance(m, linear)}
    state: dict[str, Tensor] = {}
    with _quiet():
        for name, module in quantized.items():
            weight = module.weight()
            state[f"{name}.weight"] = weight.int_repr().contiguous()
            state[f"{name}.weight_scale"] = weight.q_per_channel_scales().contiguous()
            state[f"{name}.weight_zero_point"] = weight.q_per_channel_zero_points().contiguous()
            if module.bias() is not None:
                state[f"{name}.bias"] = module.bias().detach().contiguous()
    for key, value in gpt.state_dict().items():
        if isinstance(value, Tensor) and not _under(key, quantized):
            state[key] = value.detach().contiguous()
    return state


def from_int8_state(config: GPTConfig, state: dict[str, Tensor]) -> GPT:
    """Rebuild a quantize_int8 model from int8_state's tensors; exact (the same int8 values and scales)."""
    return _filled(quantize_int8(GPT(config)), state)  # the quantized structure; its weights overwritten


def hf_from_int8_state(config, state: dict[str, Tensor]) -> QuantizedHFCausalLM:
    """Rebuild a quantize_int8 Hugging Face model from its transformers config and int8_state's tensors."""
    from transformers import AutoModelForCausalLM

    skeleton = AutoModelForCausalLM.from_config(config)  # random weights, all overwritten
    return QuantizedHFCausalLM(_filled(_quantized_copy(skeleton), state))


def _filled(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """The quantized model with int8_state's tensors in place of its own; every tensor must fit."""
    linear = _dynamic_linear()
    quantized = {name: m for name, m in model.named_modules() if isinstance(m, linear)}
    state = dict(state)
    with _quiet():
        for name, module in quantized.items():
            try:
                values = state.pop(f"{name}.weight")
                scale, zero_point = state.pop(f"{name}.weight_scale"), state.pop(f"{name}.weight_zero_point")
            except KeyError as exc:
                raise ValueError(f"int8 weights lack {exc.args[0]!r}: not an int8_state of this model shape") from None
            if values.shape != (module.out_features, module.in_features):
                raise ValueError(
                    f"{name}.weight has shape {tuple(values.shape)}, the model needs "
                    f"{(module.out_features, module.in_features)}"
                )
            weight = torch._make_per_channel_quantized_tensor(values, scale.double(), zero_point.long(), 0)
            module.set_weight_bias(weight, state.pop(f"{name}.bias", None))
    # the fp32 rest (embeddings, LayerNorms); load_state_dict would also want the quantized modules' own entries
    rest = {k: v for k, v in model.state_dict().items() if isinstance(v, Tensor) and not _under(k, quantized)}
    missing, unexpected = sorted(rest.keys() - state.keys()), sorted(state.keys() - rest.keys())
    if missing or unexpected:
        raise ValueError(f"int8 weights do not fit the model: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for key, value in state.items():
            if rest[key].shape != value.shape:
                raise ValueError(f"{key} has shape {tuple(value.shape)}, the model needs {tuple(rest[key].shape)}")
            rest[key].copy_(value)  # state_dict() tensors share storage with the module's
    return model.eval()


def _under(key: str, modules: Iterable[str]) -> bool:
    return any(key.startswith(f"{name}.") for name in modules)


def prunable(gpt: GPT | HFCausalLM) -> dict[str, nn.Parameter]:
    """The matrices magnitude pruning thins: the Linear weights of the transformer blocks (of a Hugging Face
    model: every Linear or GPT-2 Conv1D weight of its backbone; embeddings and lm_head are left whole)."""
    if isinstance(gpt, HFCausalLM):
        from transformers.pytorch_utils import Conv1D

        return {
            f"{name}.weight": module.weight
            for name, module in gpt.backbone.named_modules()
            if isinstance(module, nn.Linear | Conv1D)
        }
    return {
        f"transformer.h.{i}.{name}.weight": module.weight
        for i, block in enumerate(gpt.transformer.h)
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear)
    }


@torch.no_grad()
def prune_magnitude(gpt: GPT | HFCausalLM, sparsity: float) -> tuple[GPT | HFCausalLM, dict[str, float]]:
    """A copy of gpt whose every block matrix has exactly round(sparsity * numel) zeros, the entries of smallest
    |w| (ties broken by position). Returns the copy and each matrix's resulting share of zeros."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if is_quantized(gpt):
        raise ValueError("prune the fp32 model, not an int8-quantized one")
    model = copy.deepcopy(gpt)
    shares = {}
    for name, weight in prunable(model).items():
        k = round(sparsity * weight.numel())
        if k:
            smallest = weight.abs().flatten().topk(k, largest=False, sorted=False).indices
            weight.view(-1)[smallest] = 0.0
        shares[name] = float((weight == 0).sum()) / weight.numel()
    return model, shares


def _tensors(gpt: nn.Module, tied_once: bool) -> Iterator[Tensor]:
    """Every weight tensor, quantized Linear weights as their int8 values. tied_once: the tied wte/lm_head matrix
    once, also in an int8 model, where lm_head is an int8 copy of the fp32 wte (a GPT always ties them)."""
    linear = _dynamic_linear()
    seen: set[int] = set()
    # a GPT always ties wte and lm_head; a Hugging Face model says so in its config
    tied = isinstance(gpt, GPT) or bool(getattr(getattr(gpt, "config", None), "tie_word_embeddings", False))
    with _quiet():
        for name, module in gpt.named_modules():
            if isinstance(module, linear):
                if tied_once and tied and name.rsplit(".", 1)[-1] == "lm_head":
                    continue
                yield module.weight().int_repr()
                if module.bias() is not None:
                    yield module.bias()
                continue
            for p in module.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p.detach()


def count_parameters(gpt: nn.Module) -> tuple[int, int]:
    """(parameters, nonzero parameters) of the architecture, position embeddings included, the tied wte/lm_head
    matrix once; the same count for a model and its int8 version (whose int8 rounding may add zeros)."""
    total = nonzero = 0
    for t in _tensors(gpt, tied_once=True):
        total += t.numel()
        nonzero += int(torch.count_nonzero(t))
    return total, nonzero


def weight_bytes(gpt: nn.Module) -> int:
    """Bytes of the weights as held in memory and saved: int8 values one byte each (per-channel scales left
    out), an int8 model's own lm_head copy included."""
    return sum(t.numel() * t.element_size() for t in _tensors(gpt, tied_once=False))
