"""The models one evaluation reads (the model, its baseline, KL reference and reward model), each loaded once.

models = ModelCache()
model = models.get("models:/alignops-sft/2")     # an alignops.artifacts.LoadedModel, in eval mode
same_tokenizer(model, models.get("models:/alignops-reward/1"))   # can one read the other's token ids?
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from alignops import tracking

CAUSAL_LM = "causal_lm"  # ModelMeta.kind of a generative model: the only kind compared response by response


class ModelCache:
    """Models by URI, each loaded once, in eval mode, on the GPU when there is one (int8 models on the CPU)."""

    def __init__(self) -> None:
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._loaded: dict[str, Any] = {}

    def get(self, uri: str):
        from alignops.artifacts import load_model

        if uri not in self._loaded:
            model = load_model(tracking.resolve_model(uri))
            device = "cpu" if model.meta.quantization else self.device  # int8 kernels run on the CPU only
            model.gpt.to(device).eval()
            if model.head is not None:
                model.head.to(device).eval()
            self._loaded[uri] = model
        return self._loaded[uri]


def tokenizer_digest(model) -> str:
    """sha256 of a LoadedModel's tokenizer as it tokenizes (vocabulary, merges, special tokens), whatever its
    folder's format: alignops.json's tokenizer_sha256 is the file's hash and a Hugging Face base has none."""
    tok = model.tokenizer
    backend = getattr(tok, "backend_tokenizer", tok)  # a transformers fast tokenizer wraps a tokenizers.Tokenizer
    text = backend.to_str() if hasattr(backend, "to_str") else json.dumps(tok.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def same_tokenizer(a, b) -> bool:
    """Do two LoadedModels' token ids mean the same (a token-level KL, or scoring one's sampled ids with the other)?"""
    return tokenizer_digest(a) == tokenizer_digest(b)
