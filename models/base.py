"""A base model: the one interface that the project's own GPT and any Hugging Face causal LM both meet.

Stages, decoding and serving talk to a `CausalLM`; they never ask which family it is. models.gpt.GPT meets it
natively; `HFCausalLM` is a thin adapter around a transformers `AutoModelForCausalLM` (Llama, Qwen2, GPT-2,
Mistral, Phi, SmolLM, ...), with no branch per family: it reads the backbone (`base_model`) and the output
projection (`get_output_embeddings`) that every transformers causal LM exposes.

    model = HFCausalLM.from_folder("path/to/hf-folder")       # config.json + *.safetensors
    hidden = model.hidden_states(idx, attention_mask=mask)    # (B, T, d) after the final norm: heads read this
    logits = model(idx, attention_mask=mask)                  # (B, T, vocab_size)
    cache = model.new_cache(batch_size=B, max_len=T + 32)     # then models.generation.generate(model, ...)
    model.save("out/folder")                                  # a plain Hugging Face folder (weights + config)
    spec = backbone_spec(model)                               # JSON-able family + config (no weights)
    fresh = build_backbone(spec)                              # same architecture, random weights: load_state_dict

Masks and positions follow models.gpt: attention_mask (B, past + T) with 1 = real token, padding on either
side; position_ids default to counting real tokens only, so a left-padded row computes what it would unpadded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@runtime_checkable
class Cache(Protocol):
    """Keys/values of the positions seen so far (models.gpt.KVCache, or HFCache below)."""

    length: int  # positions filled

    def reorder(self, beam_idx: Tensor) -> None:
        """Row i becomes old row beam_idx[i] (beam search)."""


@runtime_checkable
class CausalLM(Protocol):
    """What every base model offers; models.generation and alignops.inference need nothing else."""

    lm_head: nn.Module  # hidden states (.., d) -> logits (.., vocab_size)

    @property
    def vocab_size(self) -> int: ...

    @property
    def hidden_size(self) -> int:
        """Width d of the hidden states: what a reward, value or class head takes."""

    @property
    def max_positions(self) -> int:
        """The longest sequence (prompt + generated tokens) the model accepts."""

    def hidden_states(
        self,
        idx: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        kv_cache: Cache | None = None,
    ) -> Tensor:
        """Last hidden states (B, T, d), after the final norm: what lm_head and the reward/value heads read.

        attention_mask: (B, past + T), 1 = real token; or, where the model has mask_matrices = True and without a
        cache, a mask matrix (B, 1, T, T), True where query t may attend key s (packed or tree-shaped rows: see
        shared_prefix_hidden_states), given with the position_ids of the tokens (check_mask_matrix)."""

    def __call__(
        self,
        idx: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        kv_cache: Cache | None = None,
    ) -> Tensor:
        """Next-token logits (B, T, vocab_size)."""

    def new_cache(self, batch_size: int, max_len: int) -> Cache:
        """An empty KV cache for incremental decoding of batch_size rows, up to max_len positions."""

    def save(self, folder: str | Path) -> None:
        """Weights and config into folder (the tokenizer is saved by whoever owns it)."""


# The (batch, heads, queries, keys) float32 probabilities plain-matmul attention keeps for its backward, per layer,
# above which training keeps the fused kernel: SmolLM2's 9 heads at 16 rows x 256 tokens (36 MiB) fit, 16 x 512 do not.
MATH_ATTENTION_BYTES = 64 * 2**20


def math_attention_fits(batch: int, heads: int, queries: int, keys: int, device: torch.device) -> bool:
    """Whether one forward's attention runs as plain matmuls and a softmax in the inputs' dtype rather than a fused
    kernel: on CPU, when its probabilities fit MATH_ATTENTION_BYTES and the forward is under autograd or a decoding
    step (one query per row).
    - Training: CPU flash attention's backward is the slow part of a small step: a GPT of 6 x 320 at 16 x 127 tokens
      in bf16 trains 11 % faster (641 -> 572 ms a step), its gradients as close to float32's (relative error 0.0072
      either way); PPO's update at trl_compare's small shape 1.57 -> 1.41 s.
    - Decoding: the fused kernel's fixed cost dominates one query: 16 rows x 5 heads x 64 cached keys in bf16,
      545 -> 212 us a layer (2 cores, 1 thread).
    Scoring forwards without grad (many queries: the fused kernel wins there, 2.0 against 3.1 ms at 64 x 64) and GPUs
    keep the fused kernels. The GPT computes it itself (plain_attention); a Hugging Face model through SDPA's math
    backend (attention_kernel)."""
    if device.type != "cpu" or batch * heads * queries * keys * 4 > MATH_ATTENTION_BYTES:
        return False
    return torch.is_grad_enabled() or queries == 1


def attention_kernel(batch: int, heads: int, queries: int, keys: int, device: torch.device):
    """SDPA's math backend, in the inputs' dtype, where math_attention_fits; otherwise the default (fused) choice."""
    return _math_attention() if math_attention_fits(batch, heads, queries, keys, device) else contextlib.nullcontext()


def plain_attention(
    q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None, dropout_p: float = 0.0, scale: float | None = None
) -> Tensor:
    """softmax(q k^T / sqrt(d) where allowed, -inf elsewhere) v in the inputs' dtype: q (B, H, T, d), k and v
    (B, H, S, d), allowed a boolean mask broadcastable to (B, H, T, S), None for causal (T == S). What SDPA's math
    backend computes, without its bool-to-float mask conversion and its "safe softmax" (isneginf, all, where over
    the scores, for rows with no key allowed; the GPT's masks always allow each query itself): at the small shape
    (16 x 127 tokens, bf16) a layer's attention forward and backward 26 -> 19 ms, the output's and gradients'
    errors against float64 no larger (gradient relative error 0.0047 against 0.0053). scale: 1/sqrt(d) unless given."""
    T, S = q.size(-2), k.size(-2)
    if allowed is None:
        allowed = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    scores = (q * (q.size(-1) ** -0.5 if scale is None else scale)) @ k.transpose(-2, -1)  # (B, H, T, S)
    # the mask as a bias to add: made at the mask's size (no heads), and an add has no backward to run, where a
    # masked_fill_ over the scores costs 0.37 ms forward and again backward (2 x 9 x 192 x 192, bf16, 2 threads)
    bias = torch.zeros(allowed.shape, dtype=scores.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
    probs = scores.add_(bias).softmax(dim=-1)
    if dropout_p:
        probs = F.dropout(probs, dropout_p)
    return probs @ v


PLAIN_ATTENTION = "alignops_plain"  # the name plain_attention is registered under in transformers' AttentionInterface


def _plain_attention_interface() -> str:
    """Register plain_attention as a transformers attention function, once; returns its name.

    What SDPA's math backend computes for a mask matrix, as plain_attention does for the GPT: a Hugging Face model
    runs it in place of SDPA for the mask matrices shared_prefix_hidden_states builds (boolean, each query allowed
    itself, so no row is empty and SDPA's safe softmax has nothing to catch). SmolLM2 + LoRA reward step, in
    torch.profiler: SDPA math's isneginf, all and where over the scores took 28 of 1,020 ms of CPU time a step."""
    from transformers import AttentionInterface

    if PLAIN_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(PLAIN_ATTENTION, _plain_attention_forward)
    return PLAIN_ATTENTION


def _plain_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention function signature: q (B, H, T, d), k and v (B, H_kv, S, d) -> ((B, T, H, d), None)."""
    groups = query.size(1) // key.size(1)
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` consecutive query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return plain_attention(query, key, value, attention_mask, dropout, scaling).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def _math_attention():
    # By default the math backend upcasts bf16/fp16 q, k, v to float32 (a flag named for CUDA that CPU reads too).
    # Allowed to stay in bf16, the small GPT's bf16 step takes 268 instead of 304-311 ms, its gradients as close to
    # float32's as before (relative error 0.0052 against 0.0053); the flag is process-wide, so it is put back.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    allowed = torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed()
    torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(allowed)


def check_mask_matrix(
    mask: Tensor, position_ids: Tensor | None, kv_cache: Cache | None, T: int, max_positions: int
) -> None:
    """Refuse a (B, 1, T, T) attention mask that hidden_states cannot read as one: a boolean matrix over the new
    tokens, with their position ids (nothing can be inferred from a mask matrix), no cache, positions in range."""
    B = position_ids.size(0) if position_ids is not None else mask.size(0)
    if mask.dtype != torch.bool or mask.shape != (B, 1, T, T):
        raise ValueError(
            f"a mask matrix is boolean (batch, 1, {T}, {T}), True = may attend; got {mask.dtype} {tuple(mask.shape)}"
        )
    if kv_cache is not None or position_ids is None or position_ids.shape != (B, T):
        raise ValueError(f"a mask matrix comes with position_ids ({B}, {T}) and without a KV cache")
    if int(position_ids.max()) >= max_positions:
        raise ValueError(f"position {int(position_ids.max())} is past the model's {max_positions} positions")


def real_token_positions(attention_mask: Tensor, past: int) -> Tensor:
    """Position ids (B, T) of the new tokens that count real tokens only; padding gets 0 (nothing real
    attends to it). attention_mask: (B, past + T)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]


# How much wider than the rows a packed row of shared_prefix_hidden_states may be: its attention costs up to
# PACK_WIDTH^2 a plain row's; two holds a prompt under two responses of the prompt's length (a pair, DPO's or a
# ranking's).
PACK_WIDTH = 2


def shared_prefix_hidden_states(
    model: CausalLM, ids: Tensor, attention_mask: Tensor, shared: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Hidden states of right-padded rows whose starts repeat (a prompt under its K responses), each distinct start
    run once: (hidden (N, R, d), its mask (N, R), start (N,)), hidden[i, j] being row i's position start[i] + j.

    ids, attention_mask (N, T), 1 = real token, padding on the right. shared (N,): how many leading tokens of each
    row other rows may share (its prompt's length). The rows are grouped by those tokens, a group's prefix is laid
    down once with the rest of each of its rows after it, and the groups are packed into rows of at most
    PACK_WIDTH x T tokens (first fit, longest first) that one forward runs under a tree-shaped mask (tree_mask): a
    row's rest attends to its prefix and causally to itself, never to another row's rest or another group, at the
    positions it has in its own row. The same function as one forward over all rows (causal attention: a prefix's
    states do not depend on what follows it), from fewer tokens, padding included; its gradient sums over the rows
    that read a prefix. At least a row's last token stays out of the prefix, so every row has a hidden state of its
    own to read (a reward at its last token, the logit of its first response token).

    Why one packed forward rather than the prefixes into a KV cache that the rests continue from: on CPU a forward's
    fixed costs (casts, norms, LoRA's small matmuls) are paid per call and small matmuls run slower, so two forwards
    of 128 and 256 tokens cost more than one of 384 (SmolLM2 + LoRA reward step, bf16, 2 threads, CPU time in
    torch.profiler: 1,213 ms a step with the cache, 1,057 ms packed). The packed row's attention computes every
    query against every key of the row, the masked ones too: on the small GPT (d = 320, 1 thread) the two ways
    cost the same.

    A group too long for one packed row is split, its prefix repeated. A model that takes no (B, 1, T, T) mask
    (mask_matrices), a single row, or no fewer positions to run (packed rows x their width against N x T): one plain
    forward, start all 0."""
    N, T = ids.shape
    lengths = attention_mask.long().sum(1)
    shared = torch.minimum(shared.long(), lengths - 1).clamp(min=0)

    def plain() -> tuple[Tensor, Tensor, Tensor]:
        return model.hidden_states(ids, attention_mask=attention_mask), attention_mask, torch.zeros_like(lengths)

    if N < 2 or not getattr(model, "mask_matrices", False) or not bool(lengths.all()):
        return plain()
    lens, starts, room = lengths.tolist(), shared.tolist(), PACK_WIDTH * T
    groups: list[list[int]] = []  # each a prefix's rows (the empty prefix too: rows then packed side by side)
    sizes: list[int] = []  # a group's tokens: its prefix once, then each row's rest
    last: dict[tuple[int, ...], int] = {}  # prefix -> its latest group
    for i, n in enumerate(starts):
        g = last.get(key := tuple(ids[i, :n].tolist()))
        if g is None or sizes[g] + lens[i] - n > room:
            g = last[key] = len(groups)
            groups.append([])
            sizes.append(n)
        groups[g].append(i)
        sizes[g] += lens[i] - n
    packs: list[list[int]] = []  # the groups in each packed row
    free: list[int] = []
    for g in sorted(range(len(groups)), key=lambda g: -sizes[g]):
        p = next((p for p, f in enumerate(free) if sizes[g] <= f), len(packs))
        if p == len(packs):
            packs.append([])
            free.append(room)
        packs[p].append(g)
        free[p] -= sizes[g]
    width = room - min(free)
    if len(packs) * width >= N * T:
        return plain()
    R = max(n - s for n, s in zip(lens, starts, strict=True))
    source = torch.zeros(len(packs), width, dtype=torch.long)  # each packed token's index in ids.view(-1)
    group = torch.full((len(packs), width), -1, dtype=torch.long)  # -1: padding
    branch = torch.full((len(packs), width), -1, dtype=torch.long)  # 0: the group's prefix; k: its k-th row's rest
    position = torch.zeros(len(packs), width, dtype=torch.long)
    picks = torch.zeros(N, R, dtype=torch.long)  # row i's j-th state: its index in the packed (rows x width) states
    for p, pack in enumerate(packs):
        at = 0
        for g in pack:
            n = starts[groups[g][0]]
            for k, i in enumerate(groups[g], start=1):
                first, count = (0, lens[i]) if k == 1 else (n, lens[i] - n)  # the prefix comes with the first rest
                span = slice(at, at + count)
                source[p, span] = i * T + torch.arange(first, first + count)
                position[p, span] = torch.arange(first, first + count)
                group[p, span], branch[p, span] = g, k
                if k == 1:
                    branch[p, at : at + n] = 0
                picks[i] = p * width + at + count - (lens[i] - n) + torch.arange(R).clamp(max=lens[i] - n - 1)
                at += count  # a row's picks past its end read its last state again
    device = ids.device
    group, branch = group.to(device), branch.to(device)
    packed_ids = ids.reshape(-1)[source.to(device)].masked_fill(group < 0, 0)
    hidden = model.hidden_states(packed_ids, attention_mask=tree_mask(group, branch), position_ids=position.to(device))
    hidden = hidden.reshape(-1, hidden.size(-1))[picks.to(device).reshape(-1)].view(N, R, -1)
    suffix_mask = (torch.arange(R, device=device) < (lengths - shared).unsqueeze(1)).long()
    return hidden, suffix_mask, shared


def tree_mask(group: Tensor, branch: Tensor) -> Tensor:
    """(B, 1, T, T) boolean attention mask of packed rows, True = may attend. group (B, T): which shared prefix a
    token belongs under, -1 for padding; branch (B, T): 0 for the prefix itself, k > 0 for the k-th sequence that
    continues it. A token attends causally to its group's prefix and to its own branch; padding attends to padding,
    so no row of the mask is empty."""
    T = group.size(-1)
    causal = torch.ones(T, T, dtype=torch.bool, device=group.device).tril()
    same_group = group.unsqueeze(-1) == group.unsqueeze(-2)
    query, key = branch.unsqueeze(-1), branch.unsqueeze(-2)
    return (causal & same_group & ((key == 0) | (key == query))).unsqueeze(1)


def packed_segments(position_ids: Tensor) -> Tensor | None:
    """Which sequence each token of a packed row belongs to (B, T), or None when no row holds more than one.

    A packed row (alignops.data.loaders.PackedExamples) marks where each sequence starts by restarting its
    position ids at 0; transformers reads packed rows the same way (masking_utils.find_packed_sequence_indices)."""
    if position_ids.size(-1) < 2:
        return None
    starts = torch.diff(position_ids, dim=-1) != 1  # (B, T - 1): token t + 1 starts a new sequence
    if not bool(starts.any()):
        return None
    first = torch.zeros_like(position_ids[..., :1])
    return torch.cat([first, starts.long().cumsum(-1)], dim=-1)


class HFCache:
    """A transformers DynamicCache with the `Cache` interface: `length` and `reorder`."""

    def __init__(self, config, max_len: int) -> None:
        from transformers import DynamicCache

        self.inner = DynamicCache(config=config)
        self.max_len = max_len
        self.length = 0

    def reorder(self, beam_idx: Tensor) -> None:
        self.inner.reorder_cache(beam_idx)


class HFCausalLM(nn.Module):
    """Any transformers causal LM behind the CausalLM interface; `self.model` is the transformers model."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.backbone = model.base_model  # e.g. LlamaModel / GPT2Model: returns the normed last hidden state
        self.lm_head = model.get_output_embeddings()
        if self.lm_head is None or self.backbone is model:
            raise ValueError(f"{type(model).__name__} has no separate backbone and output projection: not a causal LM")

    @classmethod
    def from_folder(cls, folder: str | Path, dtype: torch.dtype = torch.float32) -> HFCausalLM:
        """Load a local Hugging Face causal-LM folder (never reaches a hub)."""
        from transformers import AutoModelForCausalLM

        return cls(AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True))

    @property
    def config(self):
        return self.model.config

    @property
    def vocab_size(self) -> int:
        return self.lm_head.weight.size(0)

    @property
    def hidden_size(self) -> int:
        return self.lm_head.weight.size(1)

    @property
    def _heads(self) -> int:
        return int(self.model.config.get_text_config().num_attention_heads)

    @property
    def max_positions(self) -> int:
        return int(self.model.config.get_text_config().max_position_embeddings)

    @property
    def mask_matrices(self) -> bool:
        """Whether hidden_states takes a (B, 1, T, T) mask: transformers passes a 4D mask as it is to SDPA (boolean)
        and to eager attention (added to the scores); FlashAttention and flex attention take none, and a sliding
        window (Mistral's) would be lost, as transformers applies it only to the masks it builds."""
        config = self.model.config.get_text_config()
        sliding = getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
        return self.model.config._attn_implementation in ("sdpa", "eager") and not sliding

    def hidden_states(
        self,
        idx: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        kv_cache: HFCache | None = None,
    ) -> Tensor:
        B, T = idx.shape
        if attention_mask is not None and attention_mask.dim() == 4:
            check_mask_matrix(attention_mask, position_ids, kv_cache, T, self.max_positions)
            config = self.model.config
            implementation = config._attn_implementation
            if implementation == "eager":  # eager attention adds the mask to its scores
                attention_mask = torch.zeros(attention_mask.shape, device=idx.device).masked_fill(
                    ~attention_mask, torch.finfo(torch.float32).min
                )
            if implementation == "sdpa" and math_attention_fits(B, self._heads, T, T, idx.device):
                config._attn_implementation = _plain_attention_interface()  # SDPA's math, without its safe softmax
            try:
                out = self.backbone(
                    input_ids=idx, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
                )
            finally:
                config._attn_implementation = implementation
            return out.last_hidden_state
        past = 0 if kv_cache is None else kv_cache.length
        if past + T > self.max_positions:
            raise ValueError(f"sequence of {past + T} tokens exceeds the model's {self.max_positions} positions")
        if attention_mask is None and position_ids is not None and kv_cache is None:
            # packed rows (position ids restarting at 0): no mask, so transformers builds the per-sequence one
            with attention_kernel(B, self._heads, T, T, idx.device):
                out = self.backbone(input_ids=idx, position_ids=position_ids, use_cache=False)
            return out.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(B, past + T, dtype=torch.long, device=idx.device)
        if attention_mask.shape != (B, past + T):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, past + T)} "
                "(batch, cached + new positions)"
            )
        if position_ids is None:
            position_ids = real_token_positions(attention_mask, past)
        with attention_kernel(B, self._heads, T, past + T, idx.device):
            out = self.backbone(
                input_ids=idx,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=None if kv_cache is None else kv_cache.inner,
                use_cache=kv_cache is not None,
            )
        if kv_cache is not None:
            kv_cache.length = past + T
        return out.last_hidden_state

    def forward(
        self,
        idx: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        kv_cache: HFCache | None = None,
    ) -> Tensor:
        return self.lm_head(self.hidden_states(idx, attention_mask, position_ids, kv_cache))

    def new_cache(self, batch_size: int, max_len: int) -> HFCache:
        return HFCache(self.model.config, max_len)

    def save(self, folder: str | Path) -> None:
        self.model.save_pretrained(str(folder))


# ---- what a LightningModule saves to rebuild its backbone: family + config, never the weights -----------------
GPT_FAMILY = "gpt"  # models.gpt.GPT; config: the GPTConfig fields
TRANSFORMERS_FAMILY = "transformers"  # any transformers causal LM; config: its PretrainedConfig.to_dict()
FAMILIES = (GPT_FAMILY, TRANSFORMERS_FAMILY)


def backbone_spec(model: CausalLM, dropout: float | None = None) -> dict:
    """{"family": ..., "config": {...}}: JSON-able, enough for build_backbone to make the same architecture.

    dropout, when given, replaces the model's dropout probabilities in the spec (see with_dropout)."""
    from dataclasses import asdict

    from models.gpt import GPT

    if isinstance(model, GPT):
        spec = {"family": GPT_FAMILY, "config": asdict(model.config)}
    elif isinstance(model, HFCausalLM):
        # the architecture, not the precision or a quantization: build_backbone makes plain float32 weights (mixed
        # precision trains them); a quantization_config also holds enums, which checkpoints cannot unpickle safely
        skip = ("dtype", "torch_dtype", "quantization_config")
        config = {k: v for k, v in model.config.to_dict().items() if k not in skip}
        spec = {"family": TRANSFORMERS_FAMILY, "config": config}
    else:
        raise TypeError(f"a backbone must be a models.gpt.GPT or a models.base.HFCausalLM, got {type(model).__name__}")
    return spec if dropout is None else with_dropout(spec, dropout)


def with_dropout(spec: dict, dropout: float) -> dict:
    """A copy of spec whose dropout probabilities are all `dropout`: the GPT's one `dropout`; in a transformers
    config every float field named *dropout* or *pdrop* (Llama/Qwen2 attention_dropout, GPT-2 resid/embd/attn_pdrop),
    since each family names them its own way."""
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    config = dict(spec["config"])
    for key, value in config.items():
        if ("dropout" in key or key.endswith("pdrop")) and isinstance(value, float):
            config[key] = dropout
    return {**spec, "config": config}


def as_spec(backbone: Mapping[str, Any] | Any) -> dict:
    """A backbone spec from a spec, a models.gpt.GPTConfig, or a GPTConfig's dict (the project's GPT from scratch)."""
    from dataclasses import asdict

    from models.gpt import GPTConfig

    if isinstance(backbone, GPTConfig):
        return {"family": GPT_FAMILY, "config": asdict(backbone)}
    if isinstance(backbone, Mapping) and "family" in backbone:
        if backbone["family"] not in FAMILIES or not isinstance(backbone.get("config"), Mapping):
            raise ValueError(
                f"a backbone spec is {{'family': one of {FAMILIES}, 'config': {{...}}}}, got family "
                f"{backbone.get('family')!r}: make it with models.base.backbone_spec(model)"
            )
        return {"family": backbone["family"], "config": dict(backbone["config"])}
    if isinstance(backbone, Mapping):
        return {"family": GPT_FAMILY, "config": asdict(GPTConfig(**backbone))}  # GPTConfig validates, fills defaults
    raise TypeError(f"expected a backbone spec, a GPTConfig or its dict, got {type(backbone).__name__}")


def build_backbone(spec: Mapping[str, Any]) -> CausalLM:
    """A fresh model of spec's architecture, random weights in float32 (the caller loads the trained ones)."""
    spec = as_spec(spec)
    if spec["family"] == GPT_FAMILY:
        from models.gpt import GPT, GPTConfig

        return GPT(GPTConfig(**spec["config"]))
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**spec["config"])  # model_type picks the family's config class
    return HFCausalLM(AutoModelForCausalLM.from_config(config, dtype=torch.float32))
