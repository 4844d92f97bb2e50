"""Per-token quantities of a sampled batch: log-probs of given tokens, the response mask, entropy.

    seqs, lengths = generate(policy, prompt_ids, prompt_mask, config)  # models.generation; seqs (B, P + N)
    response = seqs[:, P:]                                               # (B, N) the new tokens
    mask = response_mask(response, eos_id)                               # (B, N) 1 up to and including first EOS
    full_mask = torch.cat([prompt_mask, mask], dim=1)
    logits = policy(seqs, attention_mask=full_mask)[:, P - 1 : -1]      # (B, N, V): position t predicts token t + 1
    logp = logprobs_of(logits, response)                                 # (B, N)
    logprobs = logits.log_softmax(dim=-1)                                # or, for log-probs and entropy together:
    logp, entropy = at_tokens(logprobs, response), entropy_of(logprobs)  # (B, N) each, one log-softmax
    # or straight from the final hidden states, without the (B, N, V) logits (PPO's rollout and update):
    logp, entropy = head_logprobs(hidden.flatten(0, 1), lm_head.weight, lm_head.bias, response.flatten())

logits are aligned with tokens by the caller (shift by one as above); every function is computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from models.cross_entropy import CHUNK_ELEMENTS


def logprobs_of(logits: Tensor, tokens: Tensor) -> Tensor:
    """log softmax(logits)[tokens]: logits (B, T, V), tokens (B, T) -> (B, T) float32."""
    return at_tokens(logits.float().log_softmax(dim=-1), tokens)


def at_tokens(logprobs: Tensor, tokens: Tensor) -> Tensor:
    """The log-probs (B, T, V) (a log-softmax) of the given tokens (B, T) -> (B, T).

    logprobs_of and token_entropy each take a log-softmax of the logits; a caller that needs both computes it once
    and reads it with this and entropy_of: one fused pass over the (B, T, V) tensor, not a logsumexp's several."""
    return logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def response_mask(tokens: Tensor, eos_id: int | None) -> Tensor:
    """1 at every token up to and including each row's first EOS, 0 after it: tokens (B, N) -> (B, N) long.

    A row without EOS (it ran to max_new_tokens) is all 1; eos_id None means no row ever stopped. Padding is
    recognised by position, after the first EOS, never by token id: the pad id is a real token the policy may
    sample mid-response (and often equals the EOS id)."""
    if eos_id is None:
        return torch.ones_like(tokens)
    is_eos = (tokens == eos_id).long()
    eos_before = is_eos.cumsum(dim=1) - is_eos  # EOS tokens strictly before each position
    return (eos_before == 0).long()


def token_entropy(logits: Tensor) -> Tensor:
    """H_t = -sum_v p_t,v log p_t,v: logits (B, T, V) -> (B, T) float32, in nats."""
    return entropy_of(logits.float().log_softmax(dim=-1))


def entropy_of(logprobs: Tensor) -> Tensor:
    """H_t from log-probs (B, T, V) (a log-softmax) -> (B, T). A token of probability 0 adds 0 (exp gives exactly 0
    for a log-prob of finfo.min, see models.generation.suppress_token), never NaN."""
    return -(logprobs.exp() * logprobs).sum(dim=-1)


def head_logprobs(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    tokens: Tensor,
    temperature: float = 1.0,
    suppress: int | None = None,
    entropy_grad: bool = False,
    low_weight: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The log-probs of tokens (M,) and the entropies (M,), float32, under softmax((hidden @ weight.T + bias) / T)
    with column `suppress` impossible (fixed-length rollouts: EOS): hidden (M, C) final hidden states, weight (V, C)
    and bias (V,) the lm_head's. The entropy has a gradient only with entropy_grad (an entropy bonus).

    The forward is float32 throughout, autocast or not: bf16 logits would round every log-prob by ~1e-2 and add
    that noise to each ratio and KL term (measured on SmolLM2: the log-ratio's error std 0.030 -> 0.050 between two
    policies 0.1 % apart). The logits come from one matmul; then a chunk of rows at a time (on CPU; one chunk
    elsewhere): one exp pass, the log-prob, the entropy, and the gradient with respect to the logits (softmax minus
    one-hot), so no (M, V) log-softmax is kept and no log-softmax backward runs. The backward runs in the dtype
    autocast had at the call (bf16 under bf16-mixed, float32 otherwise), as every other layer's backward: the
    gradient kept in that dtype, the two matmuls (to the hidden states and to the weight) in it. At the small
    preset the float32 backward's two matmuls were the larger part of PPO's lm_head cost. low_weight: the weight
    already in that dtype (a frozen weight's cached cast, as models.generation.CastCache keeps), else it is cast
    at each backward."""
    if hidden.dim() != 2 or tokens.shape != hidden.shape[:1] or weight.dim() != 2 or weight.size(1) != hidden.size(1):
        raise ValueError(
            f"head_logprobs takes hidden (M, C), weight (V, C) and tokens (M,), got {tuple(hidden.shape)}, "
            f"{tuple(weight.shape)} and {tuple(tokens.shape)}: flatten the batch and time dimensions first"
        )
    return _HeadLogprobs.apply(hidden, weight, bias, tokens, temperature, suppress, entropy_grad, low_weight)


class _HeadLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, tokens, temperature, suppress, entropy_grad, low_weight):
        device = hidden.device.type
        low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        with_grad = any(ctx.needs_input_grad[:3])
        M, V = hidden.size(0), weight.size(0)
        logp = torch.empty(M, dtype=torch.float32, device=hidden.device)
        entropy = torch.empty_like(logp)
        d_logp = torch.empty((M, V), dtype=low, device=hidden.device) if with_grad else None  # d(-logp) / d logits
        d_entropy = torch.empty_like(d_logp) if with_grad and entropy_grad else None  # d entropy / d logits
        with torch.autocast(device, enabled=False):
            # the temperature scales the (M, C) hidden states and the bias, not the (M, V) logits
            scaled = hidden.float() / temperature
            w = weight.float()
            b = None if bias is None else bias.float() / temperature
            index = tokens.unsqueeze(1)
            # one matmul for every row: a (V, C) head far larger than the cache (SmolLM2's, 113 MB) is read once,
            # where a matmul per chunk of rows read it again for each (its PPO iteration 15.3-15.8 -> 17.3 s)
            logits = F.linear(scaled, w, b)  # (M, V) tempered float32 logits, changed in place below
            if suppress is not None:  # finfo.min, not -inf: exp gives 0 and 0 * x stays 0 (no NaN)
                logits[:, suppress] = torch.finfo(logits.dtype).min
            rows = max(1, CHUNK_ELEMENTS // V) if device == "cpu" else M
            for start in range(0, M, rows):
                stop = min(start + rows, M)
                x = logits[start:stop]  # (r, V): the softmax's passes run while the chunk is in cache
                x.sub_(x.amax(dim=1, keepdim=True))
                p = x.exp()
                sums = p.sum(dim=1)
                log_sums = sums.log()
                p.div_(sums.unsqueeze(1))  # the softmax
                logp[start:stop] = x.gather(1, index[start:stop]).squeeze(1) - log_sums
                h = log_sums - (p * x).sum(dim=1)  # H = lse - sum p x, shift-invariant
                entropy[start:stop] = h
                if d_entropy is not None:  # dH/dx_j = -p_j (log p_j + H)
                    d_entropy[start:stop] = x.sub_((log_sums - h).unsqueeze(1)).mul_(p).neg_()
                if d_logp is not None:
                    d_logp[start:stop] = p.scatter_add_(1, index[start:stop], p.new_full((stop - start, 1), -1.0))
        if with_grad:
            weight_input = scaled.to(low) if ctx.needs_input_grad[1] else None  # read only for the weight's gradient
            ctx.save_for_backward(d_logp, d_entropy, weight_input, weight, low_weight)
            ctx.temperature, ctx.hidden_dtype = temperature, hidden.dtype
        if not entropy_grad:
            ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logp, grad_entropy):
        d_logp, d_entropy, scaled, weight, low_weight = ctx.saved_tensors
        # d loss / d logits, in place: the saved gradients were made for this one backward (once_differentiable)
        g = d_logp.mul_(grad_logp.neg().to(d_logp.dtype).unsqueeze(1))
        if d_entropy is not None and grad_entropy is not None:
            g.add_(d_entropy.mul_(grad_entropy.to(d_entropy.dtype).unsqueeze(1)))
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad_hidden = grad_weight = grad_bias = None
        with torch.autocast(g.device.type, enabled=False):  # the matmuls in g's dtype, whatever region this runs in
            if needs_hidden:  # x = hidden @ W.T / T + b / T
                w = low_weight if low_weight is not None else weight.to(g.dtype)
                grad_hidden = (g @ w).div_(ctx.temperature).to(ctx.hidden_dtype)
            if needs_weight:
                grad_weight = (g.T @ scaled).to(weight.dtype)
            if needs_bias:
                grad_bias = g.sum(dim=0, dtype=torch.float32).div_(ctx.temperature).to(weight.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None
