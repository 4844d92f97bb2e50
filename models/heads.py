"""Heads that read a base model's final hidden states (models.base.CausalLM.hidden_states: the project's GPT or any
Hugging Face causal LM) in place of its lm_head; C is the model's hidden_size.

hidden = model.hidden_states(input_ids, attention_mask=mask)   # (B, T, C)
pooled = last_token(hidden, mask)                              # (B, C): the last real token of each row
logits = ClassificationHead(C, num_classes=2, dropout=0.1)(pooled)   # (B, num_classes)
reward = ScalarHead(C)(pooled)                                 # (B,): a reward; on (B, T, C) per-token values
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor


def last_token(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """The hidden state (B, C) of each row's last real token; hidden (B, T, C), attention_mask (B, T), 1 = real.

    A causal model has read the whole text only at its last token. Padding may be on either side: the index is
    the highest position whose mask is 1 (a row without any real token gets position 0)."""
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
    last = (positions * attention_mask.long()).amax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class ScalarHead(nn.Module):
    """One number per position: the reward model's score and PPO's value estimate.

    Initialised small, std 1 / sqrt(n_embd + 1) and zero bias (Stiennon et al. 2020, "Learning to summarize
    from human feedback"), so the first scores sit near 0 whatever the backbone."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_embd, 1)
        nn.init.normal_(self.linear.weight, std=1 / math.sqrt(n_embd + 1))
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden (..., n_embd) -> (...)"""
        return self.linear(hidden).squeeze(-1)


class ClassificationHead(nn.Module):
    """Dropout then a linear layer to class logits, as GPT-1 fine-tuned for classification."""

    def __init__(self, n_embd: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(n_embd, num_classes)
        nn.init.normal_(self.linear.weight, std=0.02)  # the GPT's own init: logits start near uniform
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden (..., n_embd) -> logits (..., num_classes)"""
        return self.linear(self.dropout(hidden))
