"""DPO: optimise the SFT policy directly on the preference pairs, the SFT model as the frozen reference
(Rafailov et al. 2023); registers <prefix>-policy (tagged method=dpo), like PPO's output.

    result = run(load_config("tiny"))      # or: alignops dpo --preset tiny
"""

from __future__ import annotations

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.stages import training
from alignops.stages.data import require_valid


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> training.TrainResult:
    require_valid(cfg)
    from models.dpo import DPOModel

    dc = cfg.dpo
    start = training.start_from_base(cfg, "dpo", dc, default="sft")
    base = start.model
    loaders = training.preference_data(cfg, dc, start).loaders
    hparams = training.finetune_hparams(dc) | {"beta": dc.beta, "label_smoothing": dc.label_smoothing}
    module = DPOModel.from_base(base.gpt, compile=cfg.trainer.compile, **hparams)

    with tracking.stage_run("dpo", cfg, dc, parent_run_id, start.resume_run_id) as stage:
        start.started(stage.run_id)
        if start.resume_run_id is None:
            stage.set_tags({tracking.PARENT_MODEL_TAG: start.uri, tracking.METHOD_TAG: "dpo"})
            stage.log_metrics(training.parameter_counts(module.model))
        trainer = training.build_trainer(cfg, dc, start.stage_dir, tracking.lightning_logger(stage.run_id))
        trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=start.checkpoint)
        best = training.best_checkpoint(trainer)  # early stopping: the figures of the weights that get published
        metrics = {
            k: float(v) for k, v in trainer.test(module, loaders["test"], ckpt_path=best, verbose=False)[0].items()
        }
        stage.log_metrics(metrics)

        uri, version, model_dir = training.publish(
            start,
            training.trained(trainer, module).export(),  # whole weights under FSDP too, LoRA merged
            registered="policy",
            kind="causal_lm",
            tags={tracking.METHOD_TAG: "dpo"},
        )
        return training.TrainResult(stage.run_id, uri, version, metrics, model_dir)
