"""A GPT-2 style decoder-only transformer: the policy, reference and reward backbone of alignops.

One file, top to bottom: config, KV cache, attention, MLP, block, the model, GPT-2 checkpoint interop.
Parameter names match Hugging Face GPT-2 checkpoints, so weights load by name.

    model = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    logits = model(idx)                                     # idx (B, T) -> (B, T, vocab_size)
    logits = model(idx, attention_mask=mask)                # mask (B, T): 1 real token, 0 padding (left or right)
    hidden = model.hidden_states(idx, attention_mask=mask)  # (B, T, n_embd) after ln_f: for reward/value heads

    # incremental decoding: run the prompt once, then one token per step
    cache = KVCache(model.config, batch_size=B, max_len=T + max_new_tokens)
    logits = model(prompt, attention_mask=mask, kv_cache=cache)       # mask (B, T)
    logits = model(next_ids, attention_mask=mask2, kv_cache=cache)    # next_ids (B, 1), mask2 (B, T + 1)

    model = GPT.from_hf("path/to/gpt2")  # local folder with config.json + model.safetensors
    model.save_hf("out/gpt2-sft")        # same format, loads with transformers.GPT2LMHeadModel.from_pretrained
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.base import (
    check_mask_matrix,
    math_attention_fits,
    packed_segments,
    plain_attention,
    real_token_positions,
    tree_mask,
)


@dataclass
class GPTConfig:
    vocab_size: int = 50257  # number of token ids (GPT-2's BPE has 50257)
    block_size: int = 1024  # longest context: number of learned positions
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # width of the residual stream
    dropout: float = 0.0  # on embeddings, attention weights and both residual branches
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2 has them)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                "every head gets n_embd // n_head dimensions"
            )


class KVCache:
    """Keys and values of the positions seen so far, so a decoding step does not recompute them.

    Preallocated: per layer one k and one v tensor of shape (B, n_head, max_len, head_dim); `length` counts the
    filled positions. GPT.forward writes every layer's new keys/values at `length`, then advances it.
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.max_len = max_len
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store `layer`'s new k, v (B, n_head, T, head_dim) after the cached positions.

        Returns that layer's keys and values so far, (B, n_head, length + T, head_dim) each."""
        end = self.length + k.size(2)
        self.k[layer][:, :, self.length : end] = k
        self.v[layer][:, :, self.length : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, beam_idx: Tensor) -> None:
        """Row i becomes old row beam_idx[i] (beam search keeps the surviving beams; repeats may grow the batch)."""
        self.k = [k.index_select(0, beam_idx) for k in self.k]
        self.v = [v.index_select(0, beam_idx) for v in self.v]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.layer_idx = layer_idx  # which layer slot of a KVCache this module reads and writes
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v of all heads at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None, kv_cache: KVCache | None) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, n_head, T_past + T, head_dim)
        dropout_p = self.dropout if self.training else 0.0
        if math_attention_fits(B, self.n_head, T, k.size(2), x.device):
            y = plain_attention(q, k, v, attn_mask, dropout_p)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=attn_mask is None
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, n_head, T, head_dim) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # the tanh approximation is GPT-2's "gelu_new": the exact erf GELU would drift from its checkpoints' logits
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, attn_mask: Tensor | None, kv_cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask, kv_cache)
        return x + self.mlp(self.ln_2(x))


def attention_bias(T: int, past: int, attention_mask: Tensor | None, device: torch.device) -> Tensor:
    """Boolean SDPA mask, True = may attend: (T, past + T) causal, or (B, 1, T, past + T) with padding removed."""
    q_pos = torch.arange(past, past + T, device=device).unsqueeze(1)  # (T, 1) absolute position of each query
    k_pos = torch.arange(past + T, device=device).unsqueeze(0)  # (1, past + T)
    allowed = k_pos <= q_pos  # (T, past + T)
    if attention_mask is None:
        return allowed
    allowed = allowed & attention_mask.bool().unsqueeze(1)  # (B, T, past + T): no attending to padding
    # A padding query can be left with nothing to attend to. SDPA's output for a fully masked row depends on
    # backend and version (zeros, or NaN that reaches real tokens in the next layer through 0 * NaN); letting
    # every query see itself keeps every row well defined everywhere.
    allowed = allowed | (k_pos == q_pos)
    return allowed.unsqueeze(1)  # (B, 1, T, past + T), broadcast over heads


class GPT(nn.Module):
    mask_matrices = True  # hidden_states takes a (B, 1, T, T) attention mask (models.base.CausalLM)

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying, as in GPT-2: the output projection is the token embedding matrix
        self.lm_head.weight = self.transformer.wte.weight

        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # each block adds two branches to the residual stream; scaling them keeps its variance
                # independent of depth (GPT-2 paper, section 2.3)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def hidden_states(
        self,
        idx: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        """Final hidden states (B, T, n_embd) after ln_f: what lm_head reads, and what a reward/value head reads.

        idx (B, T) are the new tokens. attention_mask (B, past + T) covers the cached positions too: 1 real token,
        0 padding; or, without a cache, a (B, 1, T, T) mask matrix with its position_ids (models.base.CausalLM).
        position_ids (B, T) default to counting real tokens only, so a left-padded row gets the same positions, hence
        the same outputs on its real tokens, as the same row without padding. Without a mask and a
        cache, position ids that restart at 0 inside a row mark packed sequences (models.base.packed_segments):
        each attends to itself only, as it would alone.
        """
        attn_mask, position_ids, past = self._attention_inputs(idx, attention_mask, position_ids, kv_cache)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(position_ids))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, attn_mask, kv_cache)
        if kv_cache is not None:
            kv_cache.length = past + idx.size(1)
        return self.transformer.ln_f(x)

    def _attention_inputs(
        self, idx: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None, kv_cache: KVCache | None
    ) -> tuple[Tensor | None, Tensor, int]:
        """hidden_states' inputs checked and completed: (the blocks' attention mask, position ids, cached positions)."""
        B, T = idx.shape
        if attention_mask is not None and attention_mask.dim() == 4:  # a mask matrix, read as it is
            check_mask_matrix(attention_mask, position_ids, kv_cache, T, self.config.block_size)
            return attention_mask, position_ids, 0
        past = 0 if kv_cache is None else kv_cache.length
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds block_size {self.config.block_size}")
        if kv_cache is not None and past + T > kv_cache.max_len:
            raise ValueError(f"KV cache holds {kv_cache.max_len} positions, {past + T} needed")
        if attention_mask is not None and attention_mask.shape != (B, past + T):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, past + T)} "
                "(batch, cached + new positions)"
            )

        packed = attention_mask is None and kv_cache is None and position_ids is not None
        if position_ids is None:
            if attention_mask is None:
                position_ids = torch.arange(past, past + T, device=idx.device).unsqueeze(0)  # (1, T)
            else:
                # padding gets position 0; nothing real attends to it, so its value does not matter
                position_ids = real_token_positions(attention_mask, past)  # (B, T)
        # plain causal attention can use SDPA's is_causal fast path; padding or a cache need an explicit mask
        attn_mask = None
        if attention_mask is not None or kv_cache is not None:
            attn_mask = attention_bias(T, past, attention_mask, idx.device)
        elif packed and (segments := packed_segments(position_ids)) is not None:  # each packed sequence sees itself
            attn_mask = tree_mask(segments, torch.zeros_like(segments))  # (B, 1, T, T): sequences with no prefix
        return attn_mask, position_ids, past

    def forward(
        self,
        idx: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        """Next-token logits (B, T, vocab_size) at every position of idx (B, T); arguments as in hidden_states."""
        return self.lm_head(self.hidden_states(idx, attention_mask, position_ids, kv_cache))

    # ---- the models.base.CausalLM interface (shared with Hugging Face bases) ------------------------------
    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def hidden_size(self) -> int:
        return self.config.n_embd

    @property
    def max_positions(self) -> int:
        return self.config.block_size

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        p = next(self.parameters())
        return KVCache(self.config, batch_size, max_len, device=p.device, dtype=p.dtype)

    def save(self, folder: str | Path) -> None:
        self.save_hf(folder)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. non_embedding leaves out the position embeddings; the token embeddings stay,
        because, tied, they are also the weights of lm_head (the nanoGPT convention)."""
        n = sum(p.numel() for p in self.parameters())  # parameters() lists the tied matrix once
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs (forward + backward) per token at full context, for MFU (PaLM paper, appendix B):
        6 per parameter (2 forward, 4 backward) plus the attention scores/values, 12 * n_layer * n_embd * T."""
        cfg = self.config
        return 6 * self.num_params() + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size

    # ---- Hugging Face GPT-2 checkpoints -----------------------------------------------------------------
    # HF GPT-2 stores these four as Conv1D, weight (in, out): the transpose of nn.Linear's (out, in).
    _CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

    @classmethod
    def from_hf(cls, folder: str | Path, dropout: float = 0.0) -> GPT:
        """Load a Hugging Face GPT-2 checkpoint from a local folder (config.json + model.safetensors).

        dropout: HF configs carry GPT-2's pretraining dropout (0.1); fine-tuning here runs without by default.
        """
        from safetensors.torch import load_file  # only checkpoint interop needs safetensors

        folder = Path(folder)
        config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: expected a Hugging Face GPT-2 checkpoint folder")
        hf = json.loads(config_path.read_text())
        if hf.get("model_type") != "gpt2":
            raise ValueError(f"{config_path}: model_type is {hf.get('model_type')!r}, only 'gpt2' is supported")
        # GPT-2 variants this model does not implement: refuse them rather than compute wrong logits
        expected = {
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "tie_word_embeddings": True,
        }
        for key, value in expected.items():
            if hf.get(key, value) != value:
                raise ValueError(f"{config_path}: {key}={hf[key]!r} is not supported (only {value!r})")
        if hf.get("n_inner") not in (None, 4 * hf.get("n_embd", 0)):
            raise ValueError(f"{config_path}: n_inner={hf['n_inner']} is not supported (only 4 * n_embd)")
        try:
            config = GPTConfig(
                vocab_size=hf["vocab_size"],
                block_size=hf["n_positions"],
                n_layer=hf["n_layer"],
                n_head=hf["n_head"],
                n_embd=hf["n_embd"],
                dropout=dropout,
                bias=True,
            )
        except KeyError as e:
            raise ValueError(f"{config_path} lacks {e.args[0]!r}") from None
        model = cls(config)

        state = {}
        for key, tensor in load_file(weights_path).items():
            if key.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # older checkpoints store the causal mask as a buffer
            if not key.startswith(("transformer.", "lm_head.")):
                key = "transformer." + key  # saved from GPT2Model (e.g. the original "gpt2" upload): no prefix
            state[key] = tensor.t() if key.endswith(cls._CONV1D) else tensor
        # lm_head is tied to wte: HF usually omits it, and when present it is the same matrix
        if "transformer.wte.weight" in state:
            state["lm_head.weight"] = state["transformer.wte.weight"]
        model.load_state_dict(state, strict=True)
        return model

    def save_hf(self, folder: str | Path) -> None:
        """Write config.json + model.safetensors that GPT.from_hf and transformers.GPT2LMHeadModel load."""
        from safetensors.torch import save_file  # only checkpoint interop needs safetensors

        if not self.config.bias:
            raise ValueError("GPT-2 checkpoints have biases; a bias=False model cannot be saved in that format")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            key: (t.t() if key.endswith(self._CONV1D) else t).detach().cpu().contiguous()
            for key, t in self.state_dict().items()
            if key != "lm_head.weight"  # tied to wte; safetensors refuses shared tensors, and HF re-ties on load
        }
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        cfg = self.config
        hf = {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size,
            "n_embd": cfg.n_embd,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_inner": None,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.dropout,
            "tie_word_embeddings": True,
        }
        (folder / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
