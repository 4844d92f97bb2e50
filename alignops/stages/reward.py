"""Reward modelling: a scalar head on the SFT model, trained on every ordered pair of the human rankings with a
pairwise Bradley-Terry loss; registers <prefix>-reward with a quality verdict PPO checks before using it.

    result = run(load_config("tiny"))      # or: alignops reward --preset tiny

Reported on the held-out test rankings: pairwise accuracy, the accuracy of "the longer response wins" (the
length bias a reward model must beat), and the human-agreement ceiling computed from VADER's raw ratings.
"""

from __future__ import annotations

import dataclasses

from alignops import tracking
from alignops.artifacts import TOKENIZER_FILE, ModelMeta
from alignops.config import PipelineConfig
from alignops.stages import training
from alignops.stages.data import require_valid

GATE_TAG = "alignops.reward_gate"


def quality_gate(accuracy: float, length_baseline: float, floor: float) -> list[str]:
    """Why a reward model is not good enough to optimise against ([] when it is)."""
    reasons = []
    if accuracy < floor:
        reasons.append(
            f"held-out pair accuracy {accuracy:.3f} is under the floor {floor:.3f} by {floor - accuracy:.3f}"
        )
    if accuracy <= length_baseline:
        reasons.append(
            f"held-out pair accuracy {accuracy:.3f} does not beat the longer-response-wins baseline "
            f"{length_baseline:.3f} (short by {length_baseline - accuracy:.3f}): it may be rewarding length"
        )
    return reasons


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> training.TrainResult:
    require_valid(cfg)
    from alignops.data.preferences import human_ceiling, length_baseline_accuracy
    from models.reward import RewardModel

    rc = cfg.reward
    start = training.start_from_base(cfg, "reward", rc, default="sft")
    base = start.model
    data = training.preference_data(cfg, rc, base)
    rankings, pairs, loaders = data.rankings, data.pairs, data.loaders
    gpt_config = dataclasses.replace(base.gpt.config, dropout=cfg.model.dropout)
    hparams = training.optim_hparams(rc) | {"margin": rc.margin, "center_coef": rc.center_coef}
    module = RewardModel.from_gpt(base.gpt, gpt_config, compile=cfg.trainer.compile, **hparams)

    with tracking.stage_run("reward", cfg, rc, parent_run_id, start.resume_run_id) as stage:
        start.stage_dir.started(stage.run_id)
        if start.resume_run_id is None:
            stage.set_tags({"alignops.parent_model": start.uri})
            stage.log_metrics({f"data/{s}_pairs": len(p) for s, p in pairs.items()})
        trainer = training.trainer(cfg, rc, start.stage_dir, tracking.lightning_logger(stage.run_id))
        trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=start.checkpoint)
        best = training.best_checkpoint(trainer)  # early stopping: the figures of the weights that get published
        test = {k: float(v) for k, v in trainer.test(module, loaders["test"], ckpt_path=best, verbose=False)[0].items()}
        metrics = {
            "reward/accuracy": test["test/accuracy"],
            "reward/length_baseline_accuracy": length_baseline_accuracy(pairs["test"]),
            "reward/reward_mean": test["test/reward_mean"],
            "reward/reward_std": test["test/reward_std"],
        }
        ceiling = human_ceiling(rankings["test"])
        if ceiling is not None:
            metrics["reward/human_ceiling"] = ceiling
        reasons = quality_gate(metrics["reward/accuracy"], metrics["reward/length_baseline_accuracy"], rc.min_accuracy)
        stage.log_metrics(metrics)
        stage.set_tags({GATE_TAG: "passed" if not reasons else "failed: " + "; ".join(reasons)})

        meta = ModelMeta(
            kind="reward",
            stage="reward",
            data_version=start.data_version,
            tokenizer_sha256=base.meta.tokenizer_sha256,
            parent=start.uri,
            extra=training.saved_hparams(cfg, "reward") | {"metrics": metrics, "gate": reasons},
        )
        whole = training.trained(trainer, module)  # whole weights under FSDP too
        uri, version, model_dir = training.publish(
            cfg,
            "reward",
            rc,
            start.stage_dir,
            stage.run_id,
            "reward",
            whole.model,
            start.folder / TOKENIZER_FILE,
            meta,
            head=whole.head,
            tags={GATE_TAG: "passed" if not reasons else "failed"},
        )
        return training.TrainResult(stage.run_id, uri, version, metrics, model_dir)
