"""Knowledge distillation (Hinton et al. 2015): a smaller student learns a frozen teacher's next-token
distributions, softened by a temperature, together with the usual LM loss on the true tokens.

    student = GPTConfig(**{**asdict(teacher.config), "n_layer": 3})
    kd = DistillModel.from_teacher(teacher, student, temperature=2.0, alpha=0.5, optim=OptimConfig(lr=1e-3),
                                   max_steps=300)
    Trainer(max_steps=300).fit(kd, train_loader, val_loader)   # batches as for models.lm.LMModule
    kd.export()                                                 # the student

Teacher and student are any base (models.base.CausalLM); they must share one vocabulary.

loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels). The T^2 keeps the soft
term's gradients on the scale of the hard one whatever T (the paper's section 2). The KL covers every position
followed by a real token (attention_mask); the LM loss only positions whose label is not -100 (an SFT example's
response), so a mixed batch of corpus blocks and SFT pairs works as it comes from collate_right_pad.

A student as wide as its teacher starts from the teacher's embeddings, final LayerNorm and evenly spaced blocks
(DistilBERT's initialisation; a one-block student gets the first); a narrower one starts from random weights.

Metrics: train/loss, train/kl, train/lm_loss, train/lr; over the whole val set val/loss (the student's LM loss),
val/ppl and val/kl (KL to the teacher at temperature 1, per token).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric

from models.base import CausalLM, as_spec, backbone_spec, build_backbone
from models.gpt import GPT
from models.lm import IGNORE_INDEX, BackboneModule, resolve_optim


def distill_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    attention_mask: Tensor | None,
    temperature: float,
    alpha: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """(alpha * T^2 * KL + (1 - alpha) * LM, stats). logits (B, T, V) predict the token after each position;
    labels (B, T) aligned with the inputs (-100: not learned); attention_mask (B, T), 1 real, 0 padding.

    stats: kl (mean over the KL positions, at temperature T, before the T^2), lm (mean CE), n_kl, n_lm."""
    student, teacher = student_logits[:, :-1].float(), teacher_logits[:, :-1].float()  # position t predicts t + 1
    targets = labels[:, 1:]
    kl_mask = torch.ones_like(targets, dtype=torch.bool) if attention_mask is None else attention_mask[:, 1:].bool()
    log_q = F.log_softmax(student / temperature, dim=-1)
    log_p = F.log_softmax(teacher / temperature, dim=-1)
    kl_per_position = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)  # (B, T - 1)
    n_kl = kl_mask.sum()
    kl = (kl_per_position * kl_mask).sum() / n_kl.clamp(min=1)
    lm_sum = F.cross_entropy(student.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    n_lm = (targets != IGNORE_INDEX).sum()
    lm = lm_sum / n_lm.clamp(min=1)
    loss = alpha * temperature**2 * kl + (1 - alpha) * lm
    return loss, {"kl": kl, "lm": lm, "n_kl": n_kl, "n_lm": n_lm}


@torch.no_grad()
def init_from_teacher(student: GPT, teacher: GPT) -> list[int]:
    """Copy the teacher's embeddings, ln_f and evenly spaced blocks (first and last included) into a student of
    the same width, heads, vocabulary and context. Returns the teacher blocks copied, in student order."""
    s, t = student.config, teacher.config
    same = (s.n_embd, s.n_head, s.vocab_size, s.block_size, s.bias) == (t.n_embd, t.n_head, t.vocab_size,
                                                                       t.block_size, t.bias)  # fmt: skip
    if not same or s.n_layer > t.n_layer:
        raise ValueError(
            f"a student initialised from its teacher needs the teacher's width, heads, vocabulary and context and "
            f"at most its {t.n_layer} layers; got {s} for teacher {t}"
        )
    # a one-block student gets the first: the block that saw the embeddings themselves in training
    picked = [round(i * (t.n_layer - 1) / max(s.n_layer - 1, 1)) for i in range(s.n_layer)]
    for name in ("wte", "wpe", "ln_f"):
        student.transformer[name].load_state_dict(teacher.transformer[name].state_dict())
    for i, j in enumerate(picked):
        student.transformer.h[i].load_state_dict(teacher.transformer.h[j].state_dict())
    return picked


class DistillModel(BackboneModule):
    """The student (self.model), trained on a frozen teacher's soft targets (self.teacher) and the labels."""

    def __init__(
        self,
        backbone: Mapping[str, Any] | Any,  # the student's shape: a backbone spec, a GPTConfig or its dict
        teacher: Mapping[str, Any] | Any,  # the teacher's, the same way
        temperature: float = 2.0,  # softens both distributions in the KL term (> 1: more of the teacher's ranking)
        alpha: float = 0.5,  # weight of the KL term; 1 - alpha weighs the LM loss on the true tokens
        optim: Any = None,  # alignops.config.OptimConfig or its dict; None: its defaults
        max_steps: int = 1000,  # the schedule reaches lr * min_lr_ratio here; give Trainer the same max_steps
        compile: bool = False,  # torch.compile both GPTs (pays off on GPU)
    ) -> None:
        super().__init__()
        backbone, teacher, optim = as_spec(backbone), as_spec(teacher), resolve_optim(optim, max_steps)
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise ValueError(f"need temperature > 0 and 0 <= alpha <= 1, got {temperature}, {alpha}")
        self.save_hyperparameters()
        self.model = build_backbone(backbone)
        self.teacher = build_backbone(teacher).requires_grad_(False).eval()  # eval: its dropout never runs
        if self.model.vocab_size != self.teacher.vocab_size:
            raise ValueError(
                f"student and teacher need one vocabulary: {self.model.vocab_size} != {self.teacher.vocab_size}"
            )
        self.eval_metrics = nn.ModuleDict(
            {stage: nn.ModuleDict(dict(loss=MeanMetric(), kl=MeanMetric())) for stage in ("val", "test")}
        )

    @classmethod
    def from_teacher(cls, teacher: CausalLM, student: Mapping[str, Any] | Any, **hparams: Any) -> DistillModel:
        """A module around a copy of `teacher`'s weights (any base: the GPT or an HFCausalLM) and a student of shape
        `student` (a GPTConfig, or a backbone spec), which starts from the teacher (init_from_teacher) when both
        are GPTs of one width, else from random weights."""
        module = cls(student, backbone_spec(teacher), **hparams)
        module.teacher.load_state_dict(teacher.state_dict())
        if isinstance(module.model, GPT) and isinstance(module.teacher, GPT):
            s, t = module.model.config, module.teacher.config
            if (s.n_embd, s.n_head, s.block_size) == (t.n_embd, t.n_head, t.block_size) and s.n_layer <= t.n_layer:
                init_from_teacher(module.model, module.teacher)
        return module

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:
            self.teacher.compile()
        super().configure_model()

    def train(self, mode: bool = True) -> DistillModel:
        super().train(mode)
        self.teacher.eval()  # Lightning switches every submodule to train mode; the teacher is a fixed function
        return self

    def on_fit_start(self) -> None:
        # Trainer.validate runs in inference mode, so a validate() before fit leaves the metrics' reset states as
        # inference tensors, which fit's validation (no_grad only) cannot update in place: fresh states here
        for metrics in self.eval_metrics.values():
            for metric in metrics.values():
                metric.reset()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The student's logits (B, T, vocab_size)."""
        return self.model(input_ids, attention_mask=attention_mask)

    def loss(self, batch: dict[str, Tensor], temperature: float | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """distill_loss of the batch at the module's temperature (or the one given)."""
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        with torch.no_grad():
            teacher = self.teacher(ids, attention_mask=mask)
        hp = self.hparams
        return distill_loss(self(ids, mask), teacher, batch["labels"], mask, temperature or hp.temperature, hp.alpha)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        with self.frozen_weights_cast():
            loss, stats = self.loss(batch)
        n = batch["input_ids"].size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/kl", stats["kl"], batch_size=n)
        self.log("train/lm_loss", stats["lm"], batch_size=n)
        self._log_lr()
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        # at temperature 1: the distance between the distributions the two models actually sample from
        _, stats = self.loss(batch, temperature=1.0)
        m = self.eval_metrics[stage]
        m["loss"].update(stats["lm"], stats["n_lm"])  # token-weighted, as LMModule's val/loss
        m["kl"].update(stats["kl"], stats["n_kl"])

    def _log_eval(self, stage: str) -> None:
        m = self.eval_metrics[stage]
        loss, kl = m["loss"].compute(), m["kl"].compute()
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/ppl", loss.exp())
        self.log(f"{stage}/kl", kl)
        m["loss"].reset()
        m["kl"].reset()
