"""LoRA on a base model (the project's GPT or any Hugging Face causal LM), through the peft library.

`apply_lora` puts low-rank adapters on the chosen Linear layers in place and freezes everything else; `merge_lora`
folds each adapter into its layer's weight and puts the plain layer back, so the model saves and loads exactly as
it did before LoRA, without peft.

    model = apply_lora(model, LoraConfig(r=8, alpha=16))   # GPT, HFCausalLM or a transformers model
    trainable, total = count_parameters(model)             # only the lora_A / lora_B weights train
    ...train...
    model = merge_lora(model)                              # plain Linear layers again; model.save(folder)

Why a merged folder is published rather than adapter + a pinned base reference: a merged folder is an ordinary
base folder, so every consumer that loads a model today (artifacts.load_model, the served pyfunc model, generate,
evaluate, compress, the next stage's `base:`) works on it unchanged, with no peft at serving time and no second
artifact whose loss or change breaks the model. The cost, a full copy of the weights per version, is the same as
full fine-tuning's; the adapters' size saving matters for storage only, and the bases here are small.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch.nn as nn
from torch import Tensor

from alignops.config import LoraConfig

GPT_TARGET_MODULES = ("c_attn", "c_proj", "c_fc")  # the project's GPT: attention in/out and both MLP layers
ALL_LINEAR = "all-linear"  # peft's name for every Linear (Conv1D on GPT-2) except the output layer
PEFT_CONFIG_ATTR = "peft_config"  # what peft's LoraModel sets on the model it adapts
ADAPTER_PREFIX = "lora_"  # peft's parameter names: ...lora_A.default.weight, ...lora_B.default.weight


def _inner(model: nn.Module) -> nn.Module:
    """The module peft works on: the transformers model inside an HFCausalLM, the model itself otherwise."""
    from models.base import HFCausalLM

    return model.model if isinstance(model, HFCausalLM) else model


def _is_transformers(model: nn.Module) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def apply_lora(model: nn.Module, config: LoraConfig) -> nn.Module:
    """Adapters on `config.target_modules` of model, in place; every other parameter frozen. Returns model."""
    from peft import LoraConfig as PeftLoraConfig
    from peft.tuners.lora import LoraModel

    inner = _inner(model)
    targets = config.target_modules
    if targets is not None and "lm_head" in targets:
        raise ValueError(
            "lora.target_modules: the LM head (lm_head) is tied to the embeddings or read directly by "
            "the heads; adapt the attention and MLP layers instead (leave it empty for the default)"
        )
    if targets is None:
        targets = ALL_LINEAR if _is_transformers(inner) else list(GPT_TARGET_MODULES)
    from transformers.pytorch_utils import Conv1D

    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        bias="none",
        # HF GPT-2 stores its layers as Conv1D, weight (in, out): peft must know, or it warns and guesses
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in inner.modules()),
    )
    try:
        # LoraModel swaps the matching layers for LoRA layers inside `inner` itself and freezes all but adapters;
        # the wrapper is dropped: merge_lora finds the LoRA layers by type, so nothing has to keep it.
        LoraModel(inner, peft_config, "default")
    except ValueError as exc:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in inner.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(
            f"lora.target_modules {targets}: {exc}. Layer names in this {type(inner).__name__}: {names}; "
            "set lora.target_modules to some of them (or leave it empty for the default)."
        ) from exc
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the plain layer back (no peft module remains)."""
    from peft.tuners.lora import LoraLayer

    inner = _inner(model)
    lora_layers = [(name, m) for name, m in inner.named_modules() if isinstance(m, LoraLayer)]
    for name, layer in lora_layers:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = inner.get_submodule(parent_name) if parent_name else inner
        setattr(parent, child, layer.get_base_layer())
    # LoraModel leaves its config on the model: drop it, or a later apply_lora warns of "multiple adapters"
    inner.__dict__.pop(PEFT_CONFIG_ATTR, None)
    for p in model.parameters():
        p.requires_grad_(True)  # as a base is before LoRA: the next stage decides what trains
    return model


@contextlib.contextmanager
def adapters_off(model: nn.Module) -> Iterator[nn.Module]:
    """The model as its base inside the block: every LoRA layer runs its base layer alone (peft's disable_adapters
    flag), put back on exit; the adapters' requires_grad is left alone (peft's enable_adapters would set it). An RL
    policy's reference, as TRL's trainers take it: the base's weights are the SFT model's, so no frozen copy of them
    is kept (SmolLM2's GRPO: 540 MB of float32 weights and their bf16 cast)."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in _inner(model).modules() if isinstance(m, LoraLayer)]
    if not layers:
        raise ValueError("adapters_off: the model has no LoRA layers (apply_lora first)")
    if any(layer.merged for layer in layers):
        raise ValueError("adapters_off: adapters are merged into the weights; unmerge them first")
    before = [layer.disable_adapters for layer in layers]
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield model
    finally:
        for layer, disabled in zip(layers, before, strict=True):
            layer._disable_adapters = disabled


def has_lora(model: nn.Module) -> bool:
    return any(ADAPTER_PREFIX in name for name, _ in model.named_parameters())


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) tensors are counted once."""
    params = list(model.parameters())  # nn.Module.parameters() already yields a tied tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def load_base_weights(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load a plain model's state dict into `model`, which may carry LoRA adapters: an adapted layer's weight and
    bias go to its base layer (peft names them <layer>.base_layer.<name>); the adapters keep their initialisation
    (lora_B is zero, so the adapted model starts as the plain one). Anything else missing or left over raises."""
    from peft.tuners.lora import LoraLayer

    # remove_duplicate=False: a layer reachable under two names (HFCausalLM's model.* and backbone.*) gets both
    adapted = {name for name, m in model.named_modules(remove_duplicate=False) if isinstance(m, LoraLayer)}
    remapped = {}
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        remapped[f"{owner}.base_layer.{leaf}" if owner in adapted else key] = value
    missing, unexpected = model.load_state_dict(remapped, strict=False)
    missing = [k for k in missing if ADAPTER_PREFIX not in k]
    if missing or unexpected:
        raise ValueError(
            f"the base's weights do not fit this {type(model).__name__}: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; the module must be built from the base's own backbone_spec"
        )
