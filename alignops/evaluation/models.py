"""The models one evaluation reads (the model, its baseline, KL reference and reward model), each loaded once.

models = ModelCache()
model = models.get("models:/alignops-sft/2")     # an alignops.artifacts.LoadedModel, in eval mode
"""

from __future__ import annotations

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
