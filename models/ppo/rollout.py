"""Per-token quantities of a sampled batch: log-probs of given tokens, the response mask, entropy.

    seqs, lengths = generate(policy, prompt_ids, prompt_mask, config)  # models.generation; seqs (B, P + N)
    response = seqs[:, P:]                                               # (B, N) the new tokens
    mask = response_mask(response, eos_id)                               # (B, N) 1 up to and including first EOS
    full_mask = torch.cat([prompt_mask, mask], dim=1)
    logits = policy(seqs, attention_mask=full_mask)[:, P - 1 : -1]      # (B, N, V): position t predicts token t + 1
    logp = logprobs_of(logits, response)                                 # (B, N)

logits are aligned with tokens by the caller (shift by one as above); every function is computed in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor


def logprobs_of(logits: Tensor, tokens: Tensor) -> Tensor:
    """log softmax(logits)[tokens]: logits (B, T, V), tokens (B, T) -> (B, T) float32."""
    logits = logits.float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(dim=-1)


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
    """H_t = logsumexp(z_t) - sum_v softmax(z_t)_v * z_t,v: logits (B, T, V) -> (B, T) float32, in nats."""
    logits = logits.float()
    return logits.logsumexp(dim=-1) - (logits.softmax(dim=-1) * logits).sum(dim=-1)
