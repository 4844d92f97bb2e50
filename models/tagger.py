"""Token classification (named-entity recognition): any backbone that gives hidden states, a linear head per token.

    tagger = TokenTagger.from_base(gpt, labels=TAGS, max_steps=300)                # any models.base.CausalLM
    tagger = TokenTagger(Encoder.load(folder), hidden_size=384, labels=TAGS, ...)   # MiniLM, bidirectional
    logits = tagger(input_ids, attention_mask)                                      # (B, T, num_labels)

The backbone (self.model) is anything with hidden_states(input_ids, attention_mask) -> (B, T, C) and
save_hf(folder): the own GPT (causal: a token sees only its left context) or models.encoder.Encoder (BERT-style:
both sides). Batches: input_ids, labels (B, T) with -100 where nothing is learned, attention_mask (B, T).
Optimizer, schedule, compile and exact resume are every module's (models.lm.BackboneModule).

Metrics: train/loss, train/lr; {val,test}/loss and {val,test}/token_accuracy over labeled tokens. Entity-level
scores need whole sentences and live in alignops.evaluation.ner.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from models.heads import ClassificationHead
from models.lm import IGNORE_INDEX, BackboneModule, freeze_unread_lm_head, resolve_optim


class TokenTagger(BackboneModule):
    def __init__(
        self,
        backbone: nn.Module,
        hidden_size: int,
        labels: list[str],
        head_dropout: float = 0.1,
        optim: Any = None,  # alignops.config.OptimConfig or its dict (backbone and head); None: its defaults
        max_steps: int = 1000,  # the schedule reaches lr * min_lr_ratio here; give Trainer the same max_steps
        compile: bool = False,
    ) -> None:
        super().__init__()
        optim = resolve_optim(optim, max_steps)
        self.save_hyperparameters(ignore=["backbone"])
        self.model = backbone
        freeze_unread_lm_head(backbone)
        self.head = ClassificationHead(hidden_size, len(labels), head_dropout)
        k = len(labels)
        self.accuracy = nn.ModuleDict(
            {s: MulticlassAccuracy(k, average="micro", ignore_index=IGNORE_INDEX) for s in ("val", "test")}
        )
        self.loss_mean = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})

    @classmethod
    def from_base(cls, model: nn.Module, dropout: float | None = None, **hparams: Any) -> TokenTagger:
        """A tagger on `model` itself (trained in place; it is not rebuilt from a spec), head sized from its
        hidden_size. dropout is not applied here: the tagger reads the backbone as it comes."""
        if dropout is not None:
            raise ValueError("TokenTagger.from_base takes the backbone as it is: set its dropout before")
        return cls(model.train(), hidden_size=model.hidden_size, **hparams)  # as a freshly built module is

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Tag logits (B, T, num_labels)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.head(self.model.hidden_states(input_ids, attention_mask)).float()

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(mean cross-entropy over labeled tokens, logits)."""
        logits = self(batch["input_ids"], batch["attention_mask"])
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX), logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        with self.frozen_weights_cast():
            loss, _ = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        self._log_lr()
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        loss, logits = self.loss(batch)
        labeled = int((batch["labels"] != IGNORE_INDEX).sum())
        self.loss_mean[stage].update(loss, weight=max(labeled, 1))  # token-weighted over the whole set
        self.accuracy[stage].update(logits.flatten(0, 1), batch["labels"].flatten())

    def _log_eval(self, stage: str) -> None:
        self.log(f"{stage}/loss", self.loss_mean[stage].compute())
        self.log(f"{stage}/token_accuracy", self.accuracy[stage].compute())
        self.loss_mean[stage].reset()
        self.accuracy[stage].reset()

    @torch.no_grad()
    def predict_ids(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The most likely label id per token (B, T)."""
        return self(input_ids, attention_mask).argmax(-1)
