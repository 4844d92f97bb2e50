"""DPO: optimise the SFT policy directly on the preference pairs, the SFT model as the frozen reference
(Rafailov et al. 2023); registers <prefix>-policy (tagged method=dpo), like PPO's output.

    result = run(load_config("tiny"))      # or: alignops dpo --preset tiny
"""

from __future__ import annotations

from alignops import tracking
from alignops.artifacts import TOKENIZER_FILE, ModelMeta
from alignops.config import PipelineConfig
from alignops.stages import training
from alignops.stages.data import require_valid


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> training.TrainResult:
    require_valid(cfg)
    from models.dpo import DPOModel

    dc = cfg.dpo
    start = training.start_from_base(cfg, "dpo", dc, default="sft")
    base = start.model
    loaders = training.preference_data(cfg, dc, base).loaders
    hparams = training.optim_hparams(dc) | {"beta": dc.beta, "label_smoothing": dc.label_smoothing}
    module = DPOModel.from_base(base.gpt, compile=cfg.trainer.compile, **hparams)

    with tracking.stage_run("dpo", cfg, dc, parent_run_id, start.resume_run_id) as stage:
        start.stage_dir.started(stage.run_id)
        if start.resume_run_id is None:
            stage.set_tags({"alignops.parent_model": start.uri, "alignops.method": "dpo"})
        trainer = training.trainer(cfg, dc, start.stage_dir, tracking.lightning_logger(stage.run_id))
        trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=start.checkpoint)
        best = training.best_checkpoint(trainer)  # early stopping: the figures of the weights that get published
        metrics = {
            k: float(v) for k, v in trainer.test(module, loaders["test"], ckpt_path=best, verbose=False)[0].items()
        }
        stage.log_metrics(metrics)

        meta = ModelMeta(
            kind="causal_lm",
            stage="dpo",
            data_version=start.data_version,
            tokenizer_sha256=base.meta.tokenizer_sha256,
            parent=start.uri,
            extra=training.saved_hparams(cfg, "dpo"),
        )
        uri, version, model_dir = training.publish(
            cfg,
            "dpo",
            dc,
            start.stage_dir,
            stage.run_id,
            "policy",
            training.trained(trainer, module).model,  # whole weights under FSDP too
            start.folder / TOKENIZER_FILE,
            meta,
            tags={"alignops.method": "dpo"},
        )
        return training.TrainResult(stage.run_id, uri, version, metrics, model_dir)
