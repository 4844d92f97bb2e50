"""A pretrained bidirectional encoder (BERT-style, e.g. all-MiniLM-L6-v2) behind the backbone interface the
token tagger uses: hidden_states(input_ids, attention_mask) and save_hf(folder).

    encoder = Encoder.load(folder)       # a Hugging Face folder (config.json, model.safetensors), read offline
    hidden = encoder.hidden_states(ids, mask)                    # (B, T, hidden_size): every token sees both sides
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from torch import Tensor


class Encoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def load(cls, folder: Path, dropout: float | None = None) -> Encoder:
        from transformers import AutoModel

        kwargs = {} if dropout is None else {"hidden_dropout_prob": dropout}
        return cls(AutoModel.from_pretrained(str(folder), local_files_only=True, **kwargs))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_positions(self) -> int:
        return int(self.model.config.max_position_embeddings)

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def save_hf(self, folder: Path) -> None:
        self.model.save_pretrained(str(folder))
