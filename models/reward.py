"""The reward model: a backbone (models.base.CausalLM: the project's GPT or any Hugging Face causal LM) and a
ScalarHead reading each text's last real token, trained on preference pairs with the Bradley-Terry loss
(InstructGPT, Ouyang et al. 2022). With hparam `lora` only the backbone's adapters and the head train.

    rm = RewardModel.from_base(sft_model, optim=OptimConfig(lr=1e-5, warmup_steps=10), max_steps=1000, center_coef=0.01)
    Trainer(max_steps=1000, precision="bf16-mixed").fit(rm, train_loader, val_loader)   # batches: collate_pairs
    rewards = rm.eval().score(input_ids, attention_mask)                                # (B,), for PPO

Batches come from alignops.data.preferences.collate_pairs: chosen_ids, rejected_ids (B, T) right-padded to one T,
chosen_mask, rejected_mask (B, T), weight (B,). Chosen and rejected run as one forward over the distinct texts
(a ranking's pairs share their responses: pair_rewards), and with chosen_labels / rejected_labels (-100 on the
prompt) each distinct prompt runs once, packed with its responses into one row.


Metrics: train/loss, train/accuracy, train/lr; over the whole val (test) set: val/loss (the training objective),
val/accuracy (share of pairs with chosen reward > rejected, unweighted), val/reward_mean, val/reward_std (over
chosen and rejected rewards), val/margin_mean (mean chosen - rejected reward).

The Bradley-Terry loss sees reward differences only, so nothing in it fixes the rewards' offset: the head's bias
and ln_f's bias get no gradient from it. center_coef > 0 pins the mean reward near 0, which PPO, reading
absolute rewards, wants (Eisenstein et al. 2023, "Helping or Herding?"; TRL's center_rewards_coefficient).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import CatMetric, MeanMetric

from models.base import as_spec, build_backbone, shared_prefix_hidden_states
from models.heads import ScalarHead, last_token
from models.lm import BackboneModule, freeze_unread_lm_head, prompt_lengths, resolve_lora, resolve_optim, with_lora


def pairwise_loss(
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    weights: Tensor | None = None,
    margin: float | Tensor = 0.0,
    center_coef: float = 0.0,
    targets: Tensor | None = None,
) -> Tensor:
    """Bradley-Terry loss of pairs (B,) of rewards: sum(w * -logsigmoid(r_c - r_r - margin)) / sum(w), plus
    center_coef * mean((r_c + r_r)^2), which pulls every pair's mean reward towards 0.

    targets (B,), soft labels: the probability t that chosen is preferred, the loss then the cross-entropy
    -(t * logsigmoid(d) + (1 - t) * logsigmoid(-d)), d = r_c - r_r - margin, minimal at sigmoid(d) = t: a pair
    on which people agree 60 % of the time is not pushed towards certainty. None: t = 1 (plain Bradley-Terry).

    With margin m the loss keeps pushing until chosen leads rejected by more than m (Llama 2's margin loss; a
    tensor gives each pair its own); weights None weigh every pair 1."""
    d = chosen_rewards - rejected_rewards - margin
    losses = -F.logsigmoid(d)  # (B,)
    if targets is not None:
        t = targets.to(losses.dtype)
        losses = t * losses - (1 - t) * F.logsigmoid(-d)
    if weights is None:
        loss = losses.mean()
    else:
        weights = weights.to(losses.dtype)
        loss = (weights * losses).sum() / weights.sum().clamp(min=1e-12)
    if center_coef:
        loss = loss + center_coef * ((chosen_rewards + rejected_rewards) ** 2).mean()
    return loss


class RewardModel(BackboneModule):
    """A scalar reward for a whole text: ScalarHead on the backbone's hidden state at the last real token."""

    def __init__(
        self,
        backbone: Mapping[str, Any] | Any,  # models.base.backbone_spec, or a GPTConfig (or its dict)
        optim: Any = None,  # alignops.config.OptimConfig or its dict (backbone and head); None: its defaults
        max_steps: int = 1000,  # the schedule reaches lr * min_lr_ratio here; give Trainer the same max_steps
        margin: float = 0.0,  # required lead of the chosen reward over the rejected one (0: plain Bradley-Terry)
        center_coef: float = 0.01,  # weight of mean((r_c + r_r)^2): keeps rewards centred on 0 (0: off)
        soft_targets: bool = True,  # a batch's "weight" (the pair's agreement) is its soft target, not a weight
        compile: bool = False,  # torch.compile the backbone (pays off on GPU)
        lora: Any = None,  # alignops.config.LoraConfig or its dict (None: no LoRA): adapters and head train
    ) -> None:
        super().__init__()
        backbone, optim, lora = as_spec(backbone), resolve_optim(optim, max_steps), resolve_lora(lora)
        if margin < 0 or center_coef < 0:
            raise ValueError(f"margin and center_coef must be >= 0, got margin={margin}, center_coef={center_coef}")
        self.save_hyperparameters()
        self.model = with_lora(build_backbone(backbone), lora)
        freeze_unread_lm_head(self.model)
        self.head = ScalarHead(self.model.hidden_size)

        def metrics() -> nn.ModuleDict:
            # whole-set statistics: loss and its centering term are means over pairs (the loss weighted as in
            # training), rewards are kept for their std
            return nn.ModuleDict(
                dict(
                    loss=MeanMetric(),
                    center=MeanMetric(),
                    accuracy=MeanMetric(),
                    margin=MeanMetric(),
                    rewards=CatMetric(),
                )
            )

        self.eval_metrics = nn.ModuleDict({"val": metrics(), "test": metrics()})

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Rewards (B,) in float32, read at each row's last real token."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.model.hidden_states(input_ids, attention_mask=attention_mask)  # (B, T, C)
        return self.head(last_token(hidden, attention_mask)).float()

    @torch.no_grad()
    def score(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Rewards (B,) without gradient, for PPO and evaluation; call .eval() first so dropout is off."""
        return self(input_ids, attention_mask)

    def pair_rewards(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(chosen rewards (B,), rejected rewards (B,)) from one forward over the batch's distinct texts.

        A ranking of K responses gives K(K-1)/2 pairs, so each response is in K-1 of them: the forward runs once
        per distinct text (InstructGPT: K forward passes, not K(K-1)), 4 rather than 12 for K = 4, and the
        gradient of a text sums over its pairs. With labels (-100 on the prompt, as collate_pairs gives) each
        distinct prompt runs once too, its K responses after it in one packed row
        (models.base.shared_prefix_hidden_states): the same rewards from fewer tokens."""
        ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])  # (2B, T): collate_pairs pads to one T
        mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
        rows, which = torch.unique(torch.cat([ids, mask], dim=1), dim=0, return_inverse=True)
        T = ids.size(1)
        if "chosen_labels" not in batch:
            return self(rows[:, :T], rows[:, T:])[which].chunk(2)
        # the pairs' prompts run once each: a prompt's tokens are those before the first labelled (response) one
        labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
        prompt_len = torch.zeros(rows.size(0), dtype=torch.long, device=ids.device).scatter_reduce(
            0, which, prompt_lengths(labels), reduce="amin", include_self=False
        )  # a distinct text's prompt length (its copies agree on it but for truncation: the shortest then)
        hidden, mask, _ = shared_prefix_hidden_states(self.model, rows[:, :T], rows[:, T:], prompt_len)
        return self.head(last_token(hidden, mask)).float()[which].chunk(2)

    def _agreement(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The pairs' agreement as pairwise_loss reads it: soft targets, or (soft_targets off) weights."""
        return {"targets" if self.hparams.soft_targets else "weights": batch["weight"]}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        with self.frozen_weights_cast():
            chosen, rejected = self.pair_rewards(batch)
        hp = self.hparams
        loss = pairwise_loss(chosen, rejected, margin=hp.margin, center_coef=hp.center_coef, **self._agreement(batch))
        n = chosen.size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/accuracy", (chosen > rejected).float().mean(), batch_size=n)
        self._log_lr()
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        chosen, rejected = self.pair_rewards(batch)
        m = self.eval_metrics[stage]
        agreement = self._agreement(batch)
        weights = agreement.get("weights", torch.ones_like(chosen))
        # a batch's weighted mean, weighing its total weight: the weighted mean over the whole set
        m["loss"].update(pairwise_loss(chosen, rejected, margin=self.hparams.margin, **agreement), weights.sum())
        m["center"].update((chosen + rejected) ** 2)
        m["accuracy"].update((chosen > rejected).float())
        m["margin"].update(chosen - rejected)
        m["rewards"].update(torch.cat([chosen, rejected]))

    def _log_eval(self, stage: str) -> None:
        m = self.eval_metrics[stage]
        values = {name: metric.compute() for name, metric in m.items()}
        for metric in m.values():
            metric.reset()
        # the same objective as training, over the whole set: weighted Bradley-Terry mean + centering mean
        self.log(f"{stage}/loss", values["loss"] + self.hparams.center_coef * values["center"])
        self.log(f"{stage}/accuracy", values["accuracy"])
        self.log(f"{stage}/reward_mean", values["rewards"].mean())
        self.log(f"{stage}/reward_std", values["rewards"].std())
        self.log(f"{stage}/margin_mean", values["margin"])
