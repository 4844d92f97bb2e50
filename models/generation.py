"""Decoding for any models.base.CausalLM (own GPT or Hugging Face base): greedy, sampling, beam search.

    model.eval()  # generate() leaves the train/eval mode alone, and dropout would randomize decoding
    config = GenerationConfig(max_new_tokens=64, do_sample=True, top_p=0.9, eos_token_id=eos, pad_token_id=pad, seed=0)
    sequences, lengths = generate(model, input_ids, attention_mask, config)

input_ids, attention_mask: (B, T) prompts, left-padded, mask 1 = real token.
sequences: (B, T + N), each prompt followed by its new tokens and pad after its EOS; N <= max_new_tokens
(the loop stops once every row has finished). lengths: (B,) new tokens per row, its EOS included.

The prompt runs once to fill a KVCache; after that every step feeds one token per row. Greedy and sampled
decoding never wait for the device within a step (no .item()/.tolist() per token): the early exit looks at the
rows every EXIT_CHECK_EVERY steps (see there); beam search reads its candidates on the host every step.
The logits processors are small pure functions (apply_repetition_penalty, top_k_filter, top_p_filter), usable on
their own; so is the sampler (draw).

Under autocast (Trainer(precision="bf16-mixed") runs every step inside one), each call casts the model's Linear
weights to the autocast dtype once (autocast_weights), with LoRA adapters folded in, rather than at every token.
Autocast caches its casts only for weights that require grad, and not at all under Lightning's bf16-mixed (its
autocast has cache_enabled=False), so a frozen weight (a LoRA base layer's, a frozen reference's) and, in a
training run, every trained one was cast again at every decoding step: on SmolLM2 with LoRA r8 that was half the
sampling time (bench/rlhf.py --base smollm2: 4.0 s -> 1.8 s for 16 rows x 24 tokens, with draw below); for the
small preset's fully trained PPO policy, see bench/README.md. The tokens are those of
autocast's own casts (of the merged weights, for a LoRA model): a Linear under autocast computes in that dtype.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.base import Cache, CausalLM
from models.sharding import holds_whole_weights

# Decoding steps between two reads of "has every row ended?". Each read makes the host wait for the device, so it
# is not done per token; once every row has ended, at most EXIT_CHECK_EVERY - 1 further steps run (pad only).
EXIT_CHECK_EVERY = 8


@dataclass
class GenerationConfig:
    max_new_tokens: int = 32  # new tokens per row, at most
    min_new_tokens: int = 0  # EOS cannot be drawn before this many new tokens (max_new_tokens: fixed length)
    do_sample: bool = False  # sample; False = greedy, or beam search when num_beams > 1
    temperature: float = 1.0  # sampling: logits are divided by it (< 1 sharper, > 1 flatter)
    top_k: int | None = None  # sampling: keep only the k most likely tokens
    top_p: float | None = None  # sampling: keep the smallest most-likely set whose probability reaches top_p
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the row (prompt included); 1 = off
    num_beams: int = 1  # > 1: beam search (deterministic, so do_sample must be False)
    length_penalty: float = 1.0  # beam search: a hypothesis scores sum_logprob / new_len**length_penalty
    early_stopping: bool = True  # beam search: a row ends once num_beams hypotheses ended with EOS
    eos_token_id: int | None = None  # a row ends after producing it; None = always max_new_tokens
    pad_token_id: int = 0  # fills a row after its EOS
    seed: int | None = None  # seeds a private torch.Generator for sampling; None = the global RNG
    # sampling: the batch's rows are these rows of a larger batch sampled with the same seed, which has
    # global_batch_size rows (data parallel: this rank's rows of every rank's batch together); each row then draws
    # what it would draw there. None: the batch is the whole batch
    global_rows: tuple[int, ...] | None = None
    global_batch_size: int | None = None

    def __post_init__(self) -> None:
        if (self.global_rows is None) != (self.global_batch_size is None):
            raise ValueError("global_rows and global_batch_size go together: give both or neither")
        if self.global_rows is not None and not all(0 <= r < self.global_batch_size for r in self.global_rows):
            raise ValueError(f"global_rows must lie in [0, global_batch_size={self.global_batch_size})")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens must be in [0, max_new_tokens={self.max_new_tokens}], got {self.min_new_tokens}"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (use do_sample=False for greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] or None, got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("beam search is deterministic: num_beams > 1 needs do_sample=False")


def apply_repetition_penalty(
    logits: Tensor, token_ids: Tensor, penalty: float, token_mask: Tensor | None = None
) -> Tensor:
    """CTRL repetition penalty: the logit of every token present in token_ids (B, T) is divided by penalty when
    positive and multiplied by it when negative, so penalty > 1 always lowers it. logits: (B, V).
    token_mask (B, T), 1 = counts: padding must not penalize the pad token id."""
    if token_mask is None:
        token_mask = torch.ones_like(token_ids)
    counts = torch.zeros_like(logits).scatter_add_(1, token_ids, token_mask.to(logits.dtype))  # (B, V)
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(counts > 0, penalized, logits)


def suppress_token(logits: Tensor, token_id: int) -> Tensor:
    """logits (..., V) with token_id made impossible: the most negative finite float rather than -inf, so its
    probability is exactly 0 and p * log p stays 0 (an entropy or a KL over the vocabulary does not turn NaN)."""
    out = logits.clone()  # a new tensor, as the other processors return: autograd and callers keep the original
    out[..., token_id] = torch.finfo(out.dtype).min  # a Python index: no index tensor copied to the device per step
    return out


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Set every logit below the k-th largest of its row to -inf. logits: (B, V)."""
    kth = logits.topk(min(k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose total probability is >= p, at least
    one token; set the rest to -inf. logits: (B, V)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # drop a token when the more likely tokens before it already reach p; the first token is never dropped
    drop_sorted = probs.cumsum(dim=-1) - probs >= p
    drop = drop_sorted.scatter(1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def draw(
    probs: Tensor, generator: torch.Generator | None = None, rows: Tensor | None = None, of: int | None = None
) -> tuple[Tensor, Tensor]:
    """One token per row of probs (B, V), by inverse transform sampling: a uniform draw scaled to the row's total,
    located in its cumulative sum (float64 where the device has it, so a token of tiny probability keeps its share).
    The distribution of torch.multinomial(probs, 1), at a sixth of its time on CPU at V = 49,152 (2.2 against 14 ms
    for 16 rows: multinomial's cost is its per-row setup, not the arithmetic). A token of probability 0 is never
    drawn. Returns (ids (B,) long, unusable (B,) bool): a row whose probabilities are not finite (a NaN or infinite
    logit) or sum to 0 cannot be sampled from; it gets token 0, and generate() raises on it. The flag comes from the
    cumulative sum's last column, so checking costs no second pass over the vocabulary.

    rows (B,) and of: probs are these rows of a batch of `of` rows; each row takes the uniform draw that row of the
    whole batch would (one draw per row of the whole batch, in order), so a batch split across data-parallel ranks
    samples what it would in one process."""
    acc = torch.float32 if probs.device.type == "mps" else torch.float64  # MPS has no float64
    cdf = probs.to(acc).cumsum(dim=-1)
    total = cdf[:, -1:]
    shape = total.shape if rows is None else (of, 1)
    u = torch.rand(shape, generator=generator, dtype=acc, device=probs.device)
    u = (u if rows is None else u[rows]) * total
    # strictly below the total: u * total can round up to it, which would land past the last token with mass
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    ids = torch.searchsorted(cdf, u, right=True).squeeze(1)
    unusable = ~(total.squeeze(1) > 0) | ~total.squeeze(1).isfinite()
    return ids.masked_fill(unusable, 0), unusable


@contextlib.contextmanager
def autocast_weights(
    model: nn.Module,
    keep: Iterable[nn.Module] = (),
    merge_lora: bool = False,
    cache: CastCache | None = None,
    trainable: bool = False,
) -> Iterator[None]:
    """Inside the block, every frozen float32 nn.Linear weight and bias of model (requires_grad False: a LoRA
    base layer's, a reference's, a reward model's) is cast to the autocast dtype, once; the original Parameters
    are put back on exit, errors included. Nothing happens outside autocast, nor to the Linears in keep.

    A Linear under autocast computes in that dtype anyway (F.linear casts its weight at each call), so outputs and
    gradients are the same; only the repeated casts go. Autocast caches its own casts of trainable weights (within
    one autocast block), which is why they are left alone, and why swapping them would cut them off from their
    gradients. Other modules (embeddings, norms) keep float32 weights: autocast runs them in float32. A weight
    tied to an embedding (lm_head) is replaced in the Linear only; the embedding keeps the original. keep: Linears
    read directly in float32 (PPO's log-probs read lm_head.weight with autocast off).

    merge_lora (no-grad decoding only): a peft LoRA layer's cast weight is its merged one, W + scale * B A (what
    merge_lora computes), and its adapter path is off for the block: one matmul per layer instead of three
    (SmolLM2, LoRA r8 on every Linear, 16 rows: 1.95 -> 1.51 s for 24 tokens). The tokens are those of the merged
    model under autocast, which can differ by rounding from the unmerged layers'; PPO recomputes its log-probs
    without it.

    cache (a CastCache the caller keeps): the casts outlive the block, so the next block over the same frozen
    weights swaps them in without casting again. A training module keeps one for the whole fit: its frozen weights
    never change, and a weight that does (loaded in place from a checkpoint) is cast anew.

    trainable (no-grad blocks only: decoding): the trainable weights too, cast once for the block and never cached
    (a step changes them between blocks). Lightning's bf16-mixed runs autocast with its cache off, so a trained
    policy's weights were otherwise cast again at every decoding step.

    A peft adapter casts its input to its own weight's dtype (float32) before autocast casts it back to bf16 for the
    matmul: a round trip of every bf16 input (the attention output into o_proj, the MLP's into down_proj) and of
    its gradient. Inside the block that cast is left to autocast (peft's own switch, cast_input_dtype_enabled):
    the same values, four copies fewer per such layer and step (SmolLM2 + LoRA reward step, 2 x 192 tokens, in
    torch.profiler: the casts into down_proj alone took 25 of 1,057 ms of CPU time a step).

    A no-op for a sharded model (models.sharding), except inside models.sharding.gathered, where its weights are
    whole."""
    if trainable and torch.is_grad_enabled():
        raise RuntimeError("autocast_weights(trainable=True) swaps trainable weights for casts: only under no_grad")
    device_type = next(model.parameters()).device.type
    if not torch.is_autocast_enabled(device_type) or not holds_whole_weights(model):
        # sharded (FSDP2) outside models.sharding.gathered: a weight is a shard outside its unit's forward, gathered
        # anew at each forward; autocast casts it there
        yield
        return
    dtype = torch.get_autocast_dtype(device_type)
    kept = {id(m) for m in keep}
    casts: dict[int, nn.Parameter] = {}  # one cast per tensor, however many Linears share it
    swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
    merged = _mergeable_lora_layers(model) if merge_lora else []
    tuners = sys.modules.get("peft.tuners.tuners_utils")  # None when peft was never imported: no adapter to find
    uncast: list[nn.Module] = []  # peft layers whose input cast is left to autocast for the block
    try:
        for layer in merged:
            base, p = layer.get_base_layer(), layer.get_base_layer().weight
            with torch.no_grad(), torch.autocast(device_type, enabled=False):  # float32, as merge_lora's
                weight = p + sum(layer.get_delta_weight(name) for name in layer.active_adapters)
            swapped.append((base, "weight", p))
            base._parameters["weight"] = nn.Parameter(weight.to(dtype), requires_grad=False)
            layer._disable_adapters = True  # the forward then runs base_layer alone (peft's own switch)
        for module in model.modules():
            casting = tuners is not None and isinstance(module, tuners.BaseTunerLayer)
            if casting and getattr(module, "cast_input_dtype_enabled", False):
                module.cast_input_dtype_enabled = False
                uncast.append(module)
            if not isinstance(module, nn.Linear) or id(module) in kept:
                continue
            for name in ("weight", "bias"):
                p = module._parameters.get(name)
                if p is None or p.dtype != torch.float32 or (p.requires_grad and not trainable):
                    continue  # (a merged LoRA base weight is bf16 already)
                if id(p) not in casts:
                    cached = cache is not None and not p.requires_grad
                    casts[id(p)] = cache.cast(p, dtype) if cached else _cast(p, dtype)
                swapped.append((module, name, p))
                module._parameters[name] = casts[id(p)]
        yield
    finally:
        for layer in uncast:
            layer.cast_input_dtype_enabled = True
        for layer in merged:
            layer._disable_adapters = False
        for module, name, p in swapped:
            module._parameters[name] = p


def _cast(p: Tensor, dtype: torch.dtype) -> nn.Parameter:
    return nn.Parameter(p.detach().to(dtype), requires_grad=False)


class CastCache:
    """autocast_weights' casts of frozen weights, kept between blocks (see there). A cast is reused while its
    source is the same tensor with the same storage, unmodified (load_state_dict's in-place copy bumps the version
    counter), in the same dtype; the source is held, so its id is never another tensor's. Costs one low-precision
    copy of the frozen weights."""

    def __init__(self) -> None:
        self._casts: dict[int, tuple[Tensor, tuple[int, int], nn.Parameter]] = {}

    def cast(self, p: Tensor, dtype: torch.dtype) -> nn.Parameter:
        state = (p._version, p.data_ptr())
        hit = self._casts.get(id(p))
        if hit is not None and hit[0] is p and hit[1] == state and hit[2].dtype == dtype:
            return hit[2]
        cast = _cast(p, dtype)
        self._casts[id(p)] = (p, state, cast)
        return cast

    def clear(self) -> None:
        self._casts.clear()

    def __len__(self) -> int:
        return len(self._casts)


def _mergeable_lora_layers(model: nn.Module) -> list:
    """model's peft LoRA layers whose adapters can be folded into a cast weight: on, not merged already, plain LoRA
    (no DoRA-like variant), over a frozen nn.Linear. Empty when peft was never imported (no layer can be one)."""
    lora = sys.modules.get("peft.tuners.lora")
    if lora is None:
        return []
    return [
        m
        for m in model.modules()
        if isinstance(m, lora.LoraLayer)
        and not m.disable_adapters
        and not m.merged
        and not m.lora_variant
        and isinstance(m.get_base_layer(), nn.Linear)
        and not m.get_base_layer().weight.requires_grad
        and all(name in m.lora_A for name in m.active_adapters)
    ]


@torch.no_grad()
def generate(
    model: CausalLM,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    config: GenerationConfig | None = None,
) -> tuple[Tensor, Tensor]:
    """Continue left-padded prompts input_ids (B, T); returns (sequences (B, T + N), lengths (B,)), see above."""
    config = config or GenerationConfig()
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} must both be (B, T)"
        )
    total = input_ids.size(1) + config.max_new_tokens
    if total > model.max_positions:
        raise ValueError(
            f"prompt + max_new_tokens = {total} exceeds the model's {model.max_positions} positions "
            "(block_size, or max_position_embeddings for a Hugging Face base)"
        )
    vocab_size = model.vocab_size
    for name in ("pad_token_id", "eos_token_id"):
        token = getattr(config, name)
        if token is not None and not 0 <= token < vocab_size:
            # finished rows keep feeding pad through the model, so it must be a real token id
            raise ValueError(f"{name}={token} is not a token id of the model (vocab_size {vocab_size})")
    with autocast_weights(model, merge_lora=True, trainable=True):
        if config.num_beams > 1:
            return _beam_search(model, input_ids, attention_mask, config)
        return _greedy_or_sample(model, input_ids, attention_mask, config)


def _last_logits(model: CausalLM, idx: Tensor, attention_mask: Tensor, cache: Cache) -> Tensor:
    """Logits (B, V) after the last position of idx; lm_head on that position only (prompts can be long)."""
    hidden = model.hidden_states(idx, attention_mask=attention_mask, kv_cache=cache)  # (B, T, C)
    return model.lm_head(hidden[:, -1]).float()


def _greedy_or_sample(
    model: CausalLM, input_ids: Tensor, attention_mask: Tensor, config: GenerationConfig
) -> tuple[Tensor, Tensor]:
    """Rollout decoding. Nothing in a step waits for the device: the tokens are written into preallocated
    (B, T + N) buffers, finished rows go on feeding pad (masked out), and whether every row has ended is read only
    every EXIT_CHECK_EVERY steps; the sequences are cut to the longest row once, at the end."""
    B, T = input_ids.shape
    N, pad, eos = config.max_new_tokens, config.pad_token_id, config.eos_token_id
    device = input_ids.device
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    rows = None if config.global_rows is None else torch.tensor(config.global_rows, device=device)
    if rows is not None and rows.numel() != B:
        raise ValueError(f"global_rows names {rows.numel()} rows, the batch has {B}")

    seqs = torch.full((B, T + N), pad, dtype=input_ids.dtype, device=device)
    mask = torch.zeros((B, T + N), dtype=attention_mask.dtype, device=device)
    seqs[:, :T], mask[:, :T] = input_ids, attention_mask
    cache = model.new_cache(B, T + N)
    logits = _last_logits(model, input_ids, attention_mask, cache)  # prefill
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    unusable = torch.zeros(B, dtype=torch.bool, device=device)  # rows whose sampling logits were NaN or inf
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    for step in range(N):
        width = T + step  # columns written so far
        if config.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, seqs[:, :width], config.repetition_penalty, mask[:, :width])
        if config.do_sample:
            logits = logits / config.temperature
        if eos is not None and step < config.min_new_tokens:  # after the temperature: finfo.min / T would be -inf
            logits = suppress_token(logits, eos)
        if config.do_sample:
            if config.top_k is not None:
                logits = top_k_filter(logits, config.top_k)
            if config.top_p is not None:
                logits = top_p_filter(logits, config.top_p)
            next_ids, broken = draw(logits.softmax(dim=-1), generator, rows, config.global_batch_size)  # (B,) each
            unusable |= broken & ~finished
        else:
            next_ids = logits.argmax(dim=-1)  # (B,)
        next_ids = next_ids.masked_fill(finished, pad)
        lengths += (~finished).long()
        seqs[:, width] = next_ids
        mask[:, width] = (~finished).to(mask.dtype)  # pad after EOS is not a real token
        if eos is not None:
            finished |= next_ids == eos
        if step == N - 1:
            break
        if eos is not None and (step + 1) % EXIT_CHECK_EVERY == 0 and bool(finished.all()):  # the one device wait
            break
        logits = _last_logits(model, next_ids[:, None], mask[:, : width + 1], cache)
    # the longest row's new tokens: every other row is pad after its EOS up to there; one host read for both
    new, bad = torch.stack([lengths.max(), unusable.sum()]).tolist() if B else (0, 0)  # no rows: no new columns
    if bad:
        rows = unusable.nonzero().flatten().tolist()
        raise ValueError(
            f"sampling: the logits of {bad} row(s) {rows[:8]} were NaN or infinite, or left no token with "
            "probability: the model's weights or inputs are broken (check them, or the learning rate that led here)"
        )
    return seqs[:, : T + new], lengths


def _beam_search(
    model: CausalLM, input_ids: Tensor, attention_mask: Tensor, config: GenerationConfig
) -> tuple[Tensor, Tensor]:
    B, T = input_ids.shape
    K, V = config.num_beams, model.vocab_size
    device = input_ids.device
    eos, pad, lp = config.eos_token_id, config.pad_token_id, config.length_penalty

    cache = model.new_cache(B, T + config.max_new_tokens)
    logits = _last_logits(model, input_ids, attention_mask, cache)  # prefill once per prompt: (B, V)
    # every beam of a prompt starts from that prompt: copy rows rather than run the prompt K times
    rows = torch.arange(B, device=device).repeat_interleave(K)  # (B*K,), beams of prompt b are rows b*K .. b*K+K-1
    cache.reorder(rows)
    logits, seqs, mask = logits[rows], input_ids[rows], attention_mask[rows]
    beam_scores = torch.zeros(B, K, device=device)  # sum of log-probs of each beam's new tokens
    beam_scores[:, 1:] = float("-inf")  # the K beams are identical at first: extend only one, or top-K = K copies

    hyps: list[list[tuple[float, Tensor]]] = [[] for _ in range(B)]  # finished (score, new tokens), best K kept
    done = [False] * B

    def add_hyp(b: int, score: float, tokens: Tensor) -> None:
        hyps[b].append((score, tokens))
        if len(hyps[b]) > K:
            hyps[b].remove(min(hyps[b], key=lambda h: h[0]))

    for step in range(config.max_new_tokens):
        new_len = step + 1
        if config.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, seqs, config.repetition_penalty, mask)
        if eos is not None and step < config.min_new_tokens:
            logits = suppress_token(logits, eos)
        logprobs = F.log_softmax(logits, dim=-1)  # (B*K, V)
        candidates = (beam_scores.view(-1, 1) + logprobs).view(B, K * V)  # every one-token extension of every beam
        # 2K candidates: even if K of them end with EOS, K remain to continue
        top_scores, top_idx = candidates.topk(2 * K, dim=1)  # (B, 2K)

        next_scores = torch.full((B, K), float("-inf"), device=device)
        next_ids = torch.full((B, K), pad, dtype=torch.long, device=device)
        next_rows = torch.arange(B * K, device=device).view(B, K)  # finished prompts keep their rows
        for b in range(B):
            if done[b]:
                continue
            slot = 0
            for rank, (score, idx) in enumerate(zip(top_scores[b].tolist(), top_idx[b].tolist(), strict=True)):
                if score == float("-inf"):
                    break  # fewer live extensions than beams (tiny vocabularies, first step)
                beam, token = divmod(idx, V)
                if token == eos:
                    if rank < K:  # an EOS ranked below K would not have survived as a beam either
                        tokens = torch.cat([seqs[b * K + beam, T:], seqs.new_tensor([eos])])
                        add_hyp(b, score / new_len**lp, tokens)
                    continue
                next_scores[b, slot], next_ids[b, slot], next_rows[b, slot] = score, token, b * K + beam
                slot += 1
                if slot == K:
                    break
            if len(hyps[b]) == K:
                worst = min(h[0] for h in hyps[b])
                # without early stopping, go on while the best live beam (at its current length) still
                # beats the worst kept hypothesis: the Hugging Face heuristic
                done[b] = config.early_stopping or next_scores[b, 0].item() / new_len**lp <= worst
        if all(done):
            break

        next_rows = next_rows.view(-1)
        cache.reorder(next_rows)
        seqs = torch.cat([seqs[next_rows], next_ids.view(-1, 1)], dim=1)
        mask = torch.cat([mask[next_rows], torch.ones_like(mask[:, :1])], dim=1)
        beam_scores = next_scores
        if step < config.max_new_tokens - 1:
            logits = _last_logits(model, next_ids.view(-1, 1), mask, cache)

    # prompts still running at max_new_tokens: their live beams are hypotheses too
    for b in range(B):
        if not done[b]:
            for k in range(K):
                score = beam_scores[b, k].item()
                if score > float("-inf"):
                    add_hyp(b, score / (seqs.size(1) - T) ** lp, seqs[b * K + k, T:])

    best = [max(row, key=lambda h: h[0])[1] for row in hyps]
    lengths = torch.tensor([len(t) for t in best], device=device)
    new = torch.full((B, int(lengths.max())), pad, dtype=torch.long, device=device)
    for b, tokens in enumerate(best):
        new[b, : len(tokens)] = tokens
    return torch.cat([input_ids, new], dim=1), lengths
