"""LightningModules around a base model (models.base.CausalLM: the project's GPT or any Hugging Face causal LM):
LMModule (pretraining and SFT) and ClassifierModule, on the shared BackboneModule.

    lm = LMModule(GPTConfig(...), optim=OptimConfig(lr=6e-4, warmup_steps=100), max_steps=5000)   # from scratch
    sft = LMModule.from_base(base, dropout=0.1, optim=OptimConfig(lr=1e-4), max_steps=500)       # GPT or HFCausalLM
    sft = LMModule.from_base(base, lora=LoraConfig(r=8), max_steps=500)                          # adapters only
    clf = ClassifierModule.from_base(base, labels=["negative", "positive"], max_steps=300)
    Trainer(max_steps=5000, precision="bf16-mixed").fit(lm, train_loader, val_loader)
    sft.export().save("out/folder")                   # the trained backbone, LoRA merged: a plain model folder

Batches come from alignops.data.loaders: input_ids (B, T); for LMModule labels (B, T) aligned with input_ids
(-100 = not learned; the module shifts them: position t predicts labels[t + 1]); for ClassifierModule label
(B,); attention_mask (B, T), 1 real token, 0 right padding.

Metrics: train/loss, train/lr, train/tokens_per_sec; val/loss and val/ppl over the whole val set (token-weighted);
ClassifierModule: {val,test}/{loss,accuracy,precision,recall,f1} (macro), {val,test}/f1_<label>, and the
confusion matrix in `confusion_matrix[stage]`.

The backbone is saved in the hyperparameters as its spec (models.base.backbone_spec: family + config, no
weights), so load_from_checkpoint and type(module)(**module.hparams) rebuild it, LoRA adapters included (hparam
`lora`, alignops.config.LoraConfig's dict: only the adapters and the heads train). Optimizer, schedule and L1/L2
penalties come from one alignops.config.OptimConfig (`optim`, passed whole, saved as a dict in the
hyperparameters; None: its defaults), built by models.optim for every module.

A checkpoint resumes exactly: Lightning restores weights, optimizer, scheduler and step; these modules add the
RNG states (dropout), and alignops.data.loaders.ResumableLoader the data position. Nothing here fixes a device
or dtype: Trainer(accelerator=..., precision=...) decides (bf16-mixed included; losses are computed in float32).
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.strategies import FSDPStrategy
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from models import optim as optimizers
from models.base import CausalLM, as_spec, backbone_spec, build_backbone
from models.cross_entropy import IGNORE_INDEX, cross_entropy_sum
from models.generation import CastCache, autocast_weights
from models.heads import ClassificationHead, last_token
from models.lora import apply_lora, has_lora, load_base_weights, merge_lora
from models.sharding import is_sharded


def prompt_lengths(labels: Tensor) -> Tensor:
    """Tokens before each row's first labelled one (B,): its prompt, with labels -100 on prompt and padding; a row
    with no label gets T."""
    T = labels.size(1)
    return torch.where(labels != IGNORE_INDEX, torch.arange(T, device=labels.device), T).amin(dim=1)


def resolve_optim(optim: Any, max_steps: int) -> dict[str, Any]:
    """The optimizer settings as a checked plain dict (an OptimConfig, its dict, or None for its defaults): what
    save_hyperparameters stores."""
    settings = optimizers.settings(optim)
    optimizers.check_schedule(settings, max_steps)
    return settings


def resolve_lora(lora: Any) -> dict[str, Any] | None:
    """The LoRA settings as a checked plain dict (an alignops.config.LoraConfig or its dict), or None (no LoRA):
    what save_hyperparameters stores."""
    from alignops.config import LoraConfig

    return None if lora is None else LoraConfig.model_validate(dict(lora)).model_dump()


def with_lora(model: CausalLM, lora: Mapping[str, Any] | None) -> CausalLM:
    """model with LoRA adapters (in place) when `lora` (resolve_lora's dict) is set; else model unchanged."""
    from alignops.config import LoraConfig

    return model if lora is None else apply_lora(model, LoraConfig(**lora))


def merged_with(model: CausalLM, lora: Mapping[str, Any] | None, state: Mapping[str, Tensor], dtype) -> CausalLM:
    """model (changed in place) with `lora`'s adapters, `state` loaded over its own weights (all of them, or only
    the trained ones a checkpoint holds), LoRA merged into plain layers, in dtype: a trained policy rebuilt outside
    its module (BackboneModule.export of a sharded model, the PPO stage's roll back)."""
    model = with_lora(model, lora)
    model.load_state_dict({**model.state_dict(), **state})
    return (merge_lora(model) if has_lora(model) else model).to(dtype)


def freeze_unread_lm_head(model: CausalLM) -> None:
    """Freeze the LM head of a backbone whose outputs a head module reads instead (classifier, reward, tagger):
    the loss never reaches it, so it would only sit in the optimizer. A head tied to the input embeddings (the
    project's GPT, GPT-2) is left trainable: it is the embedding matrix, which the loss does reach."""
    weight = getattr(getattr(model, "lm_head", None), "weight", None)
    tied = any(m.weight is weight for m in model.modules() if isinstance(m, nn.Embedding))
    if weight is not None and not tied:
        model.lm_head.requires_grad_(False)


class BackboneModule(L.LightningModule):
    """What every module shares: the base model (a CausalLM) in self.model, optional compile, the configured
    optimizer + schedule (hparams optim and max_steps), L1/L2 penalties, RNG in checkpoints, export()."""

    model: CausalLM

    def __init__(self) -> None:
        super().__init__()
        self._compiled = False
        self._rng_to_restore: dict[str, Any] | None = None
        self._frozen_casts = CastCache()

    def frozen_weights_cast(self) -> contextlib.AbstractContextManager:
        """Wraps each step: under autocast (bf16-mixed) every frozen Linear weight (LoRA base layers, a frozen
        reference or teacher) is swapped for its bf16 cast, made once for the whole fit, not at every forward
        (models.generation.autocast_weights with a CastCache). Autocast re-casts a frozen weight at each call, and a
        step makes several: the reward model's prompt and response forwards, DPO's policy and reference (SmolLM2:
        about 0.1 s a cast). A no-op outside autocast, and under FSDP, whose flat parameters own the Linears'. The
        casts are dropped when the fit ends (on_fit_end), so the module does not carry them into export and
        evaluation."""
        if self._trainer is not None and isinstance(self.trainer.strategy, FSDPStrategy):
            return contextlib.nullcontext()
        return autocast_weights(self, cache=self._frozen_casts)

    def on_fit_end(self) -> None:
        self._frozen_casts.clear()  # one bf16 copy of the frozen weights: needed while training only

    @classmethod
    def from_base(cls, model: CausalLM, dropout: float | None = None, **hparams: Any) -> BackboneModule:
        """A module whose backbone starts from `model`'s weights (a copy: `model` itself is left as it is).

        dropout None keeps the model's own dropout probabilities; a float replaces them all (fine-tuning)."""
        module = cls(backbone_spec(model, dropout), **hparams)
        module.load_base(model)
        return module

    def load_base(self, model: CausalLM) -> None:
        """Copy `model`'s weights into the backbone (into the base layers when LoRA adapts them)."""
        load_base_weights(self.model, model.state_dict())

    def export(self) -> CausalLM | None:
        """The trained backbone, ready to save: self.model itself, or with LoRA a merged copy (plain layers, no
        peft; the module keeps its adapters).

        Sharded (models.sharding, RL under FSDP): every rank must call it, as the shards are gathered (a collective)
        into a whole copy, built anew, on rank 0's CPU; the other ranks get None."""
        if is_sharded(self.model):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on rank 0 only
            state = get_model_state_dict(self.model, options=options)
            if self.global_rank != 0:
                return None
            dtype = next(self.model.parameters()).dtype  # bf16 under bf16-true, as unsharded export gives it
            return merged_with(build_backbone(backbone_spec(self.model)), self.hparams.get("lora"), state, dtype)
        return merge_lora(copy.deepcopy(self.model)) if has_lora(self.model) else self.model

    def configure_model(self) -> None:
        # Lightning calls this in every fit/validate/test: compile once, in place (state dict keys unchanged)
        if self.hparams.compile and not self._compiled:
            self.model.compile()
            self._compiled = True

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = optimizers.build(
            self, self.hparams.optim, self.hparams.max_steps, fused=not optimizers.gradients_scaled(self)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # the L1/L2 penalties' gradient, once per optimizer step (after accumulation, before clipping)
        optim = self.hparams.get("optim")  # PPO (manual optimization, no OptimConfig) has none
        if optim and (optim["l1"] or optim["l2"]):
            self.log("train/penalty", optimizers.add_penalty_gradients(self, optim["l1"], optim["l2"]))

    def _log_lr(self) -> None:
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0])

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Under FSDP each rank holds a shard of the gradients: only the root FSDP module knows the global norm
        # (Lightning's own clipping refuses FSDP). Elsewhere Lightning clips as usual.
        from torch.distributed.fsdp import FullyShardedDataParallel

        if gradient_clip_val and isinstance(self.trainer.model, FullyShardedDataParallel):
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---- exact resume: the RNG states (dropout) travel in the checkpoint ------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["rng_states"] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # applied at on_train_start, not here: loading a checkpoint for evaluation must not touch the global RNG,
        # and setup between here and training (sanity check, compile) must not consume the restored stream
        self._rng_to_restore = checkpoint.get("rng_states")

    # Validation and test share one code path: each subclass accumulates a batch in _eval_step(batch, stage) and
    # logs the whole set's figures in _log_eval(stage), stage being "val" or "test".
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        with self.frozen_weights_cast():
            self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        with self.frozen_weights_cast():
            self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        raise NotImplementedError

    def _log_eval(self, stage: str) -> None:
        raise NotImplementedError

    def on_train_start(self) -> None:
        states, self._rng_to_restore = self._rng_to_restore, None
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        random.setstate(states["python"])
        if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])


class LMModule(BackboneModule):
    """Next-token prediction on the positions whose label is not -100: pretraining (every position) and SFT
    (the response only). Val/test loss is the token-weighted mean over the whole set, ppl its exp."""

    def __init__(
        self,
        backbone: Mapping[str, Any] | Any,  # models.base.backbone_spec, or a GPTConfig (or its dict) from scratch
        optim: Any = None,  # alignops.config.OptimConfig or its dict; None: its defaults
        max_steps: int = 5000,  # the schedule reaches lr * min_lr_ratio here; give Trainer the same max_steps
        compile: bool = False,  # torch.compile the backbone (pays off on GPU)
        lora: Any = None,  # alignops.config.LoraConfig or its dict (None: no LoRA): train adapters only
    ) -> None:
        super().__init__()
        backbone, optim, lora = as_spec(backbone), resolve_optim(optim, max_steps), resolve_lora(lora)
        self.save_hyperparameters()
        self.model = with_lora(build_backbone(backbone), lora)
        self.eval_loss = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self._batch_tokens = 0
        self._last_step_end = 0.0

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None
    ) -> Tensor:
        """Logits (B, T, vocab_size). position_ids restarting inside a row mark packed sequences (no mask then)."""
        return self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(mean cross-entropy over the supervised next-token targets, their number). A packed batch
        (alignops.data.loaders.PackedExamples) gives the same figure as the same examples padded: every target
        token counts once, and each sequence attends only to itself."""
        logits = self(batch["input_ids"], batch.get("attention_mask"), batch.get("position_ids"))
        # position t predicts token t + 1; the last position gets an ignored target rather than its logits being
        # sliced off: flattening logits[:, :-1] copies the (B, T, V) tensor forward and backward, 30-40 ms of a
        # 340 ms small-preset step (bf16)
        targets = F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)
        # float32 arithmetic on logits of any dtype, the gradient made in the forward (models.cross_entropy)
        loss_sum = cross_entropy_sum(logits.flatten(0, 1), targets.flatten(), IGNORE_INDEX)
        n = (targets != IGNORE_INDEX).sum()
        return loss_sum / n.clamp(min=1), n

    def on_before_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        # still on the CPU, so no device sync: an all-ones mask (packed blocks) is dropped, which lets attention
        # take SDPA's causal fast path; the real-token count feeds train/tokens_per_sec
        mask = batch.get("attention_mask")
        if self.trainer.training:
            if "real_tokens" in batch:  # a packed batch: its tail padding is not counted
                self._batch_tokens = int(batch["real_tokens"])
            else:
                self._batch_tokens = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        if mask is not None and bool(mask.all()):
            batch = {k: v for k, v in batch.items() if k != "attention_mask"}
        return batch

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        with self.frozen_weights_cast():
            loss, _ = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        self._log_lr()
        return loss

    def on_train_start(self) -> None:
        super().on_train_start()
        self._last_step_end = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()  # wall time between step ends: data loading and optimizer step included
        self.log("train/tokens_per_sec", self._batch_tokens / max(now - self._last_step_end, 1e-9))
        self._last_step_end = now

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        loss, n = self.loss(batch)
        self.eval_loss[stage].update(loss, n)

    def _log_eval(self, stage: str) -> None:
        loss = self.eval_loss[stage].compute()  # sum(loss_b * n_b) / sum(n_b): every target token counts once
        self.eval_loss[stage].reset()
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/ppl", loss.exp())


class ClassifierModule(BackboneModule):
    """A backbone reading the text, a ClassificationHead on the hidden state of its last real token.

    labels: class names in index order; metrics per class are logged under them ({stage}/f1_<label>)."""

    def __init__(
        self,
        backbone: Mapping[str, Any] | Any,  # models.base.backbone_spec, or a GPTConfig (or its dict)
        labels: list[str],
        head_dropout: float = 0.1,
        optim: Any = None,  # alignops.config.OptimConfig or its dict (backbone and head); None: its defaults
        max_steps: int = 1000,  # the schedule reaches lr * min_lr_ratio here; give Trainer the same max_steps
        compile: bool = False,
        lora: Any = None,  # alignops.config.LoraConfig or its dict (None: no LoRA): adapters and head train
    ) -> None:
        super().__init__()
        backbone, optim, lora = as_spec(backbone), resolve_optim(optim, max_steps), resolve_lora(lora)
        labels = list(labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"labels must name at least two distinct classes, got {labels}")
        self.save_hyperparameters()
        self.model = with_lora(build_backbone(backbone), lora)
        freeze_unread_lm_head(self.model)
        self.head = ClassificationHead(self.model.hidden_size, len(labels), head_dropout)
        k = len(labels)
        metrics = MetricCollection(
            {
                "accuracy": MulticlassAccuracy(k, average="micro"),
                "precision": MulticlassPrecision(k, average="macro"),
                "recall": MulticlassRecall(k, average="macro"),
                "f1": MulticlassF1Score(k, average="macro"),
                "f1_per_class": MulticlassF1Score(k, average=None),
                "confusion": MulticlassConfusionMatrix(k),
            }
        )
        self.metrics = nn.ModuleDict({"val": metrics.clone(), "test": metrics.clone()})
        # the last epoch's confusion matrix per stage ("val", "test"): rows true class, columns predicted
        self.confusion_matrix: dict[str, Tensor] = {}

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Class logits (B, num_classes)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.model.hidden_states(input_ids, attention_mask=attention_mask)  # (B, T, C)
        return self.head(last_token(hidden, attention_mask)).float()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        with self.frozen_weights_cast():
            loss = F.cross_entropy(self(batch["input_ids"], batch["attention_mask"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["label"].size(0))
        self._log_lr()
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(logits, batch["label"])
        self.log(f"{stage}/loss", loss, batch_size=batch["label"].size(0))  # mean weighted by batch size
        self.metrics[stage].update(logits, batch["label"])

    def _log_eval(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        for name in ("accuracy", "precision", "recall", "f1"):
            self.log(f"{stage}/{name}", values[name])
        for label, f1 in zip(self.hparams.labels, values["f1_per_class"], strict=True):
            self.log(f"{stage}/f1_{label}", f1)
        self.confusion_matrix[stage] = values["confusion"].cpu()
