"""FSDP2 sharding (torch.distributed.fsdp.fully_shard) of the project's causal LMs, for RL on a base too big for one
device: each rank holds 1/N of every weight, gradient and optimizer moment, and gathers one transformer block's
whole weights at a time.

    shard_causal_lm(model, mesh)           # every transformer block a unit, then the root (embeddings, final
                                           # norm, lm_head) as one more; hidden_states gathers as forward does
    shard_causal_lm(reference, mesh, frozen=True)   # no backward: its root resharded after each forward too
    with gathered(model): generate(model, ...)   # decoding: one all-gather per unit for the whole call
    with whole_root(reference): ...        # a frozen model's lm_head read after its hidden_states
    is_sharded(model)                      # whether fully_shard reached any of its modules
    holds_whole_weights(model)             # not sharded, or inside gathered(): its weights may be swapped for casts

The blocks are models.gpt.Block for the project's GPT and, for a Hugging Face model, the classes it names in
_no_split_modules (LlamaDecoderLayer, ...), the units transformers, accelerate and TRL wrap. A module's parameters
are DTensor shards outside its forward. FSDP2 runs on CPU over gloo as on GPUs over NCCL, which is how the tests
exercise it (FSDP1 needs an accelerator).

Not sharded by this: the value and reward heads (a (1, C) matrix each; the caller shards them as units of their own
so their gradients are reduced).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

FORWARD_METHODS = ("hidden_states",)  # what PPO, reward models and decoding call instead of forward


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """model's transformer blocks, in order: models.gpt.Block, or the classes a transformers model lists in
    _no_split_modules."""
    from models.gpt import Block

    names = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or ())
    return [m for m in model.modules() if isinstance(m, Block) or type(m).__name__ in names]


def shard_causal_lm(model: nn.Module, mesh, frozen: bool = False) -> nn.Module:
    """fully_shard each transformer block of model (a CausalLM), then model itself, in place, over the mesh's ranks.

    The root unit (embeddings, final norm, lm_head) of a trained model stays whole from its forward to its backward,
    as FSDP2 has a root by default: PPO's float32 log-probs read the lm_head weight after hidden_states, and their
    backward reads it again. A frozen model (frozen=True: a reference, a reward model) has no backward, so its root
    is resharded after every forward like its blocks; whole_root() holds it whole where a caller reads its lm_head.

    Raises ValueError for a model without recognisable blocks: sharding it as one unit would gather all of it for
    every forward, which is no use for a model too big for one device."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    blocks = transformer_blocks(model)
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} has no transformer blocks FSDP can shard one at a time (models.gpt.Block, or a "
            "transformers model's _no_split_modules): use trainer.strategy=ddp"
        )
    for unit, reshard in [*((block, True) for block in blocks), (model, frozen)]:
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard)
        setattr(unit, _RESHARD, reshard)  # FSDP2 has no getter for it: gathered() and whole_root() restore it
    for name in FORWARD_METHODS:
        register_fsdp_forward_method(model, name)
    return model


_RESHARD = "_alignops_reshard_after_forward"  # each unit's setting, as shard_causal_lm made it
_GATHERED = "_alignops_gathered"  # set on a module while gathered() holds its whole weights


def is_sharded(module: nn.Module) -> bool:
    import torch.distributed

    if not torch.distributed.is_available():  # builds without distributed support have no FSDP
        return False
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in module.modules())


def holds_whole_weights(module: nn.Module) -> bool:
    """Whether module's parameters are its whole weights now: it is not sharded, or gathered() holds them (FSDP2
    then leaves them registered as they are until the block ends, so a caller may swap them for casts meanwhile)."""
    return getattr(module, _GATHERED, False) or not is_sharded(module)


@contextlib.contextmanager
def _whole(units: list[nn.Module]) -> Iterator[None]:
    """These FSDP units hold their whole weights inside the block: gathered once, kept through every forward."""
    try:
        for unit in units:
            unit.set_reshard_after_forward(False, recurse=False)
            unit.unshard()
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(getattr(unit, _RESHARD, True), recurse=False)


@contextlib.contextmanager
def gathered(module: nn.Module) -> Iterator[None]:
    """Every FSDP unit of module holds its whole weights inside the block, gathered once: decoding N tokens then
    costs one all-gather per unit, not N. Costs the memory of the whole module for the block (as TRL's
    unwrap_model_for_generation does), which is what decoding a sharded model without a separate inference engine
    takes. A no-op for a module that is not sharded. Every rank must enter it (the gathers are collectives)."""
    if not is_sharded(module):
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    with _whole([m for m in module.modules() if isinstance(m, FSDPModule)]):
        setattr(module, _GATHERED, True)
        try:
            yield
        finally:
            setattr(module, _GATHERED, False)


@contextlib.contextmanager
def whole_root(model: nn.Module) -> Iterator[None]:
    """A sharded model's root unit (embeddings, final norm, lm_head) whole inside the block, its blocks as they are:
    for reading a frozen model's lm_head weight after its hidden_states. A no-op for a model not sharded."""
    with _whole([model] if is_sharded(model) else []):  # sharded: shard_causal_lm made the root a unit
        yield
