"""Per-token quantities of a sampled batch: log-probs of given tokens, the response mask, entropy.

    seqs, lengths = generate(policy, prompt_ids, prompt_mask, config)  # models.generation; seqs (B, P + N)
    response = seqs[:, P:]                                               # (B, N) the new tokens
    mask = response_mask(response, eos_id)                               # (B, N) 1 up to and including first EOS
    full_mask = torch.cat([prompt_mask, mask], dim=1)
    logits = policy(seqs, attention_mask=full_mask)[:, P - 1 : -1]      # (B, N, V): position t predicts token t + 1
    logp = logprobs_of(logits, response)                                 # (B, N)
    logprobs = logits.log_softmax(dim=-1)                                # or, for log-probs and entropy together:
    logp, entropy = at_tokens(logprobs, response), entropy_of(logprobs)  # (B, N) each, one log-softmax

logits are aligned with tokens by the caller (shift by one as above); every function is computed in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
