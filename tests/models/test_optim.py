"""The training controls: every optimizer builds and steps, every schedule's learning-rate curve with warm-up,
L1/L2 change the weights, dropout acts in train mode only, and early stopping publishes the best checkpoint."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn as nn
from lightning.pytorch.plugins import MixedPrecision

from alignops.config import ConfigError, OptimConfig, list_presets, load_config
from alignops.data.loaders import PackedBlocks, resumable_loader
from alignops.stages import training
from models.gpt import GPT, GPTConfig
from models.lm import LMModule
from models.optim import OPTIMIZERS, SCHEDULES, add_penalty_gradients, build, lr_multiplier

GPT_SHAPE = dict(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16)


def _stream(n: int = 4000, seed: int = 0) -> torch.Tensor:
    # a learnable stream: mostly counting mod 32, with some noise
    g = torch.Generator().manual_seed(seed)
    tokens = torch.arange(n) % 32
    noise = torch.rand(n, generator=g) < 0.1
    return torch.where(noise, torch.randint(0, 32, (n,), generator=g), tokens)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_builds_and_steps(name):
    torch.manual_seed(0)
    module = LMModule(GPTConfig(**GPT_SHAPE), optim=OptimConfig(optimizer=name, lr=1e-2, warmup_steps=0), max_steps=10)
    optimizer, scheduler = build(module, module.hparams.optim, module.hparams.max_steps)
    assert type(optimizer).__name__.lower() == name
    decayed, rest = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0  # biases and LayerNorm gains: no decay
    assert all(p.dim() == 1 for p in rest["params"]) and all(p.dim() == 2 for p in decayed["params"])
    before = copy.deepcopy(module.state_dict())
    ids = _stream(64).view(4, 16)
    loss, _ = module.loss({"input_ids": ids, "labels": ids})
    loss.backward()
    optimizer.step()
    scheduler.step()
    changed = [n for n, p in module.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert len(changed) == len(list(module.parameters())), "every parameter moves after one step"
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.9


def test_adam_steps_fused_as_the_per_parameter_loop_does():
    def three_steps(fused: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        module = LMModule(GPTConfig(**GPT_SHAPE), optim=OptimConfig(lr=1e-2, warmup_steps=0), max_steps=10)
        optimizer, _ = build(module, module.hparams.optim, module.hparams.max_steps, fused=fused)
        assert optimizer.defaults["fused"] is (True if fused else None)
        ids = _stream(64).view(4, 16)
        for _ in range(3):
            module.loss({"input_ids": ids, "labels": ids})[0].backward()
            optimizer.step()
            optimizer.zero_grad()
        return {n: p.detach().clone() for n, p in module.named_parameters()}

    fused, loop = three_steps(True), three_steps(False)
    for name in fused:  # 3 steps of lr 1e-2 move a weight up to 3e-2; the kernels' rounding differs by < 1e-5
        torch.testing.assert_close(fused[name], loop[name], rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize(("precision", "fused"), [("32-true", True), ("bf16-mixed", True), ("16-mixed", None)])
def test_trainer_clips_gradients_with_adam_fused_unless_fp16_scales_them(precision, fused):
    # bf16-mixed: Lightning's plugin refuses to clip for an optimizer that says it unscales gradients itself (a
    # fused one), though no GradScaler runs; 16-mixed has one, so its Adam is not fused
    torch.manual_seed(0)
    module = LMModule(GPTConfig(**GPT_SHAPE), optim=OptimConfig(lr=1e-2, warmup_steps=0), max_steps=3)
    norms = []  # the gradients' norm each step used: a step's post-hook sees them as clipped

    def watch(optimizer, args, kwargs) -> None:
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()])).item())

    module.on_train_start = lambda: module.optimizers().optimizer.register_step_post_hook(watch)
    # the Trainer turns precision "16-mixed" on CPU into bf16-mixed; the plugin itself runs fp16 with a GradScaler
    options = {"plugins": [MixedPrecision("16-mixed", "cpu")]} if precision == "16-mixed" else {"precision": precision}
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, gradient_clip_val=1e-3, **options,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)  # fmt: skip
    trainer.fit(module, resumable_loader(PackedBlocks(_stream(), 16), batch_size=8, seed=0))
    assert trainer.optimizers[0].defaults["fused"] is fused
    assert len(norms) == 3 and all(n <= 1e-3 * 1.001 for n in norms), norms  # every step clipped to the bound


def test_schedules_warm_up_then_follow_their_curve():
    curve = {
        s: [lr_multiplier(s, t, warmup_steps=4, max_steps=20, min_lr_ratio=0.1) for t in range(25)] for s in SCHEDULES
    }
    for s in SCHEDULES:
        assert curve[s][:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0]), s  # linear warm-up to the peak at step 4
    # half way through the decay (step 12 of 4..20): cosine and linear both at 1 - 0.9 / 2; a quarter in they differ
    assert curve["cosine"][12] == pytest.approx(0.55) and curve["linear"][12] == pytest.approx(0.55)
    assert curve["linear"][8] == pytest.approx(1 - 0.25 * 0.9)
    assert curve["cosine"][8] == pytest.approx(0.1 + 0.5 * (1 + 2**-0.5) * 0.9)
    assert curve["cosine"][20:] == pytest.approx([0.1] * 5) and curve["linear"][20:] == pytest.approx([0.1] * 5)
    assert curve["constant"][4:] == [1.0] * 21
    # the built scheduler follows the same curve, times the peak lr
    module = LMModule(
        GPTConfig(**GPT_SHAPE), optim=OptimConfig(lr=0.5, schedule="linear", warmup_steps=4), max_steps=20
    )
    optimizer, scheduler = build(module, module.hparams.optim, 20)
    seen = []
    for _ in range(25):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5 * m for m in curve["linear"]])


def test_penalty_gradients_by_hand():
    layer = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.0, 3.0]]))
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    penalty = add_penalty_gradients(layer, l1=0.5, l2=0.25)
    assert penalty == pytest.approx(0.5 * 6 + 0.25 * 14)  # l1 * sum|w| + l2 * sum w^2 of the matrix only
    # d/dw: l1 * sign(w) + 2 * l2 * w
    assert torch.allclose(layer[0].weight.grad, torch.tensor([[1.0, -1.5], [0.0, 2.0]]))
    assert not layer[0].bias.grad.any() and not layer[1].weight.grad.any()  # biases and norms are not penalised


def _fit(optim: OptimConfig, steps: int = 30) -> tuple[LMModule, L.Trainer]:
    torch.manual_seed(0)
    module = LMModule(GPTConfig(**GPT_SHAPE), optim=optim, max_steps=steps)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    trainer.fit(module, resumable_loader(PackedBlocks(_stream(), 16), batch_size=8, seed=0))
    return module, trainer


def test_l1_and_l2_shrink_the_weights_they_penalise():
    def size(module: LMModule, p: int) -> float:
        return float(
            sum(w.detach().abs().pow(p).sum() for w in module.model.transformer.h[0].mlp.parameters() if w.dim() == 2)
        )

    # weight decay off, so the penalties alone make the difference
    plain, _ = _fit(OptimConfig(lr=3e-3, warmup_steps=0, weight_decay=0.0))
    l2, trainer = _fit(OptimConfig(lr=3e-3, warmup_steps=0, weight_decay=0.0, l2=0.05))
    l1, _ = _fit(OptimConfig(lr=3e-3, warmup_steps=0, weight_decay=0.0, l1=0.01))
    assert size(l2, 2) < 0.9 * size(plain, 2)
    assert size(l1, 1) < 0.9 * size(plain, 1)
    assert trainer.callback_metrics["train/penalty"] > 0  # logged with the loss


def test_dropout_is_active_in_train_mode_only():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(**GPT_SHAPE, dropout=0.5))
    ids = _stream(32).view(2, 16)
    gpt.train()
    assert not torch.equal(gpt(ids), gpt(ids))  # a fresh mask per forward
    gpt.eval()
    assert torch.equal(gpt(ids), gpt(ids))


class _ScriptedValidation(LMModule):
    """A LMModule whose monitored val/score follows a script: best at the second validation, worse after."""

    SCRIPT = (0.5, 0.9, 0.7, 0.6, 0.4, 0.3)

    def _log_eval(self, stage: str) -> None:
        super()._log_eval(stage)
        self.validations = getattr(self, "validations", 0) + 1
        self.log("val/score", self.SCRIPT[self.validations - 1])


class _Snapshots(L.Callback):
    def __init__(self) -> None:
        self.by_step: dict[int, dict] = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        self.by_step[trainer.global_step] = copy.deepcopy(pl_module.state_dict())


def test_early_stopping_publishes_the_best_checkpoint_not_the_last(home):
    cfg = load_config("tiny", ["trainer.accelerator=cpu", "trainer.devices=1"])
    train = cfg.pretrain.model_copy(update=dict(
        max_steps=12, warmup_steps=0, val_every_n_steps=2, val_batches=1, checkpoint_every_n_steps=2,
        early_stopping_metric="val/score", early_stopping_mode="max", early_stopping_patience=2,
    ))  # fmt: skip
    stage_dir = training.StageDir("early-stopping-test", {})
    torch.manual_seed(0)
    module = _ScriptedValidation(GPTConfig(**GPT_SHAPE), **training.optim_hparams(train))
    snapshots = _Snapshots()
    kwargs = training.trainer_kwargs(cfg, train, stage_dir, logger=False)
    kwargs["callbacks"].append(snapshots)
    trainer = L.Trainer(**kwargs, enable_progress_bar=False)
    blocks = PackedBlocks(_stream(), 16)
    trainer.fit(module, resumable_loader(blocks, 8, seed=0), resumable_loader(blocks, 8, seed=0, shuffle=False))
    # validations at steps 2, 4, 6, 8 score 0.5, 0.9, 0.7, 0.6: two without improvement after the best, so it stops
    assert trainer.global_step == 8 and sorted(snapshots.by_step) == [2, 4, 6, 8]
    published = training.trained(trainer, module).state_dict()
    best, last = snapshots.by_step[4], snapshots.by_step[8]
    assert all(torch.equal(published[k], best[k]) for k in best)
    assert not all(torch.equal(published[k], last[k]) for k in last)


def test_without_early_stopping_the_last_weights_are_published(home):
    cfg = load_config("tiny", ["trainer.accelerator=cpu", "trainer.devices=1"])
    train = cfg.pretrain.model_copy(update=dict(max_steps=4, warmup_steps=0, val_every_n_steps=2, val_batches=1))
    module = LMModule(GPTConfig(**GPT_SHAPE), **training.optim_hparams(train))
    trainer = L.Trainer(**training.trainer_kwargs(cfg, train, training.StageDir("t", {}), logger=False),
                        enable_progress_bar=False)  # fmt: skip
    blocks = PackedBlocks(_stream(400), 16)
    trainer.fit(module, resumable_loader(blocks, 8, seed=0), resumable_loader(blocks, 8, seed=0, shuffle=False))
    assert training.best_checkpoint(trainer) is None
    assert training.trained(trainer, module) is module


@pytest.mark.parametrize("preset", list_presets())
def test_every_control_validates_in_every_preset_and_every_stage(preset):
    stages = ("pretrain", "sft", "classify", "reward", "dpo", "compress.distill")
    controls = ["optimizer=sgd", "momentum=0.8", "schedule=linear", "warmup_steps=0", "l1=1e-6", "l2=1e-5",
                "early_stopping_metric=val/loss", "early_stopping_patience=2"]  # fmt: skip
    cfg = load_config(
        preset, [f"{s}.{c}" for s in stages for c in controls] + ["model.dropout=0.1", "ppo.optimizer=sgd"]
    )
    for s in ("pretrain", "sft", "classify", "reward", "dpo"):
        section = getattr(cfg, s)
        optim = training.optim_hparams(section)["optim"]
        assert optim["optimizer"] == "sgd" and optim["schedule"] == "linear" and optim["l2"] == 1e-5
        assert section.early_stopping_metric == "val/loss"
    assert cfg.compress.distill.optimizer == "sgd" and cfg.ppo.optimizer == "sgd" and cfg.model.dropout == 0.1
    with pytest.raises(ConfigError, match="pretrain.optimizer"):
        load_config(preset, ["pretrain.optimizer=lion"])
    with pytest.raises(ConfigError, match="sft.schedule"):
        load_config(preset, ["sft.schedule=step"])
