"""Direct Preference Optimization (Rafailov et al. 2023): the policy learns preference pairs directly, against a
frozen copy of the SFT model, with no reward model and no sampling.

    dpo = DPOModel.from_base(sft_model, beta=0.1, optim=OptimConfig(lr=1e-5, warmup_steps=10), max_steps=1000)
    Trainer(max_steps=1000, precision="bf16-mixed").fit(dpo, train_loader, val_loader)
    dpo.export()                                # the aligned model; dpo.reference stays the SFT weights

sft_model is a models.base.CausalLM (the project's GPT or an HFCausalLM); with hparam `lora` only the policy's
adapters train, and the reference is a plain frozen copy of the SFT weights.

The loss of a pair: -logsigmoid(beta * ((pc - rc) - (pr - rr))), with pc, pr the policy's and rc, rr the
reference's log-probabilities of the chosen and rejected responses, each summed over the response tokens only.
beta * (policy - reference) log-prob is the implicit reward; label_smoothing > 0 is conservative DPO (cDPO), for
preference labels that are wrong with that probability.

Batches: chosen_ids, chosen_mask, rejected_ids, rejected_mask (B, T), right-padded to one common T as
alignops.data.preferences.collate_pairs pads them; chosen_labels, rejected_labels (B, T) aligned with the ids, -100
on the prompt and on padding (alignops.data.loaders.SFTDataset's convention: labels[t] is the token at t); weight
(B,) optional. Chosen and rejected run as one forward per model, each distinct prompt once (response_logprob: the
responses after the prompt in one packed row).

The reference is a registered submodule with requires_grad False and always in eval mode: it is not in the
optimizer, but it is in the checkpoint (one more copy of the backbone's weights), so a resumed or reloaded run has it.

Metrics: train/loss, train/accuracy, train/lr, dpo/rewards_chosen, dpo/rewards_rejected, dpo/margin (batch
means); over the whole val (test) set: val/loss (the weighted training objective), val/accuracy (share of pairs
whose chosen implicit reward beats the rejected one), val/margin (mean chosen - rejected implicit reward).

Tests: .venv/bin/python -m pytest tests/models/test_dpo.py -q
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric

from models.base import CausalLM, as_spec, build_backbone, shared_prefix_hidden_states
from models.lm import IGNORE_INDEX, BackboneModule, prompt_lengths, resolve_lora, resolve_optim, with_lora
from models.ppo.rollout import logprobs_of


def sequence_logprob(logits: Tensor, labels: Tensor) -> Tensor:
    """Sum of the log-probs of the labelled tokens, in float32: logits (B, T, V), labels (B, T) -> (B,).

    Position t predicts labels[t + 1]; labels of -100 (prompt, padding) count nothing."""
    targets = labels[:, 1:]
    learned = targets != IGNORE_INDEX
    logp = logprobs_of(logits[:, :-1], targets.masked_fill(~learned, 0))  # (B, T - 1); index 0 stands in for -100
    return torch.where(learned, logp, 0.0).sum(-1)


def response_logprob(model: CausalLM, ids: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
    """sequence_logprob of model's logits, each distinct prompt run once: a pair's chosen and rejected responses
    follow it in one packed row (models.base.shared_prefix_hidden_states). ids, mask, labels (B, T), right-padded;
    the prompt is what comes before the first labelled token, its last token kept with the response (it predicts
    the response's first). The same log-probs as one forward over all rows, from fewer tokens."""
    T = ids.size(1)
    hidden, suffix_mask, start = shared_prefix_hidden_states(model, ids, mask, prompt_lengths(labels) - 1)
    at = (start.unsqueeze(1) + torch.arange(hidden.size(1), device=ids.device)).clamp(
        max=T - 1
    )  # each suffix position's place in its row
    suffix_labels = labels.gather(1, at).masked_fill(suffix_mask == 0, IGNORE_INDEX)
    return sequence_logprob(model.lm_head(hidden), suffix_labels)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DPO loss of pairs, every argument (B,) of sequence log-probs: (loss, stats).

    With d = beta * ((pc - rc) - (pr - rr)) a pair's loss is -(1 - e) * logsigmoid(d) - e * logsigmoid(-d), e the
    label smoothing (0: plain DPO); the loss is sum(w * loss) / sum(w), weights None weighing every pair 1.
    stats (detached, unweighted batch means): rewards/chosen = beta * (pc - rc), rewards/rejected =
    beta * (pr - rr), rewards/accuracy (share of pairs with chosen > rejected), rewards/margin (chosen - rejected).
    """
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)  # (B,) implicit rewards
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    logits = chosen_rewards - rejected_rewards
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    if weights is None:
        loss = losses.mean()
    else:
        weights = weights.to(losses.dtype)
        loss = (weights * losses).sum() / weights.sum().clamp(min=1e-12)
    stats = {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/accuracy": (chosen_rewards > rejected_rewards).float().mean(),
        "rewards/margin": logits.mean(),
    }
    return loss, {k: v.detach() for k, v in stats.items()}


class DPOModel(BackboneModule):
    """The policy (self.model), trained by DPO against a frozen reference model (self.reference)."""

    def __init__(
        self,
        backbone: Mapping[str, Any] | Any,  # models.base.backbone_spec, or a GPTConfig (or its dict)
        beta: float = 0.1,  # strength of the pull towards the reference (the KL coefficient DPO solves for)
        label_smoothing: float = 0.0,  # assumed probability that a pair's preference is flipped (cDPO); < 0.5
        optim: Any = None,  # alignops.config.OptimConfig or its dict; None: its defaults
        max_steps: int = 1000,  # the schedule reaches lr * min_lr_ratio here; give Trainer the same max_steps
        compile: bool = False,  # torch.compile both models (pays off on GPU)
        lora: Any = None,  # alignops.config.LoraConfig or its dict (None: no LoRA): the policy's adapters train
    ) -> None:
        super().__init__()
        backbone, optim, lora = as_spec(backbone), resolve_optim(optim, max_steps), resolve_lora(lora)
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.save_hyperparameters()
        self.model = with_lora(build_backbone(backbone), lora)
        self.reference = build_backbone(backbone).requires_grad_(False).eval()
        self.eval_metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(dict(loss=MeanMetric(), accuracy=MeanMetric(), margin=MeanMetric()))
                for stage in ("val", "test")
            }
        )

    def load_base(self, model: CausalLM) -> None:
        """Policy and reference both start from `model` (the SFT weights); the reference runs in eval mode, so
        from_base's dropout never touches it."""
        super().load_base(model)
        self.reference.load_state_dict(model.state_dict())

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:
            self.reference.compile()
        super().configure_model()

    def train(self, mode: bool = True) -> DPOModel:
        super().train(mode)
        self.reference.eval()  # Lightning switches every submodule to train mode; the reference is a fixed function
        return self

    def pair_logps(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(policy chosen, policy rejected, reference chosen, reference rejected) response log-probs, (B,) each."""
        if "chosen_labels" not in batch or "rejected_labels" not in batch:
            raise KeyError(
                "a DPO batch needs chosen_labels and rejected_labels (the ids with -100 on the prompt and padding), "
                f"got keys {sorted(batch)}: alignops.data.preferences.collate_pairs does not produce them yet"
            )
        ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])  # (2B, T): chosen rows first
        mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
        labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
        policy = response_logprob(self.model, ids, mask, labels)
        with torch.no_grad():
            reference = response_logprob(self.reference, ids, mask, labels)
        return *policy.chunk(2), *reference.chunk(2)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """(DPO loss of the batch, its stats): dpo_loss on pair_logps."""
        hp = self.hparams
        return dpo_loss(*self.pair_logps(batch), hp.beta, batch.get("weight"), hp.label_smoothing)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        with self.frozen_weights_cast():
            loss, stats = self.loss(batch)
        n = batch["chosen_ids"].size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/accuracy", stats["rewards/accuracy"], batch_size=n)
        self.log("dpo/rewards_chosen", stats["rewards/chosen"], batch_size=n)
        self.log("dpo/rewards_rejected", stats["rewards/rejected"], batch_size=n)
        self.log("dpo/margin", stats["rewards/margin"], batch_size=n)
        self._log_lr()
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        loss, stats = self.loss(batch)
        n = batch["chosen_ids"].size(0)
        weight = batch.get("weight")
        m = self.eval_metrics[stage]
        # batch means weighing what they average over: the means over the whole set
        m["loss"].update(loss, weight.sum() if weight is not None else n)
        m["accuracy"].update(stats["rewards/accuracy"], n)
        m["margin"].update(stats["rewards/margin"], n)

    def _log_eval(self, stage: str) -> None:
        for name, metric in self.eval_metrics[stage].items():
            self.log(f"{stage}/{name}", metric.compute())
            metric.reset()
