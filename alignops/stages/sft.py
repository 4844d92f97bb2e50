"""Supervised fine-tuning: the chat template over prompt/response pairs, loss on the response tokens only,
starting from the registered base model; registers <prefix>-sft and logs example generations.

    result = run(load_config("tiny"))      # or: alignops sft --preset tiny
"""

from __future__ import annotations

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.stages import training
from alignops.stages.data import require_valid


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> training.TrainResult:
    require_valid(cfg)
    from alignops.data.loaders import PackedExamples, SFTDataset, collate_packed, collate_right_pad, resumable_loader
    from alignops.inference import Generator, decoding
    from models.lm import LMModule

    start = training.start_from_base(cfg, "sft", cfg.sft)
    base, base_uri, stage_dir = start.model, start.uri, start.stage_dir
    resume_run_id, ckpt = start.resume_run_id, start.checkpoint
    max_len = cfg.sft.max_len or base.gpt.max_positions
    train_records = training.spread(datasets.load_split(cfg.data.data_dir, "sft", "train"), cfg.sft.max_train_examples)
    train_set = SFTDataset(train_records, start.chat, max_len)
    val_set = SFTDataset(datasets.load_split(cfg.data.data_dir, "sft", "val"), start.chat, max_len)
    collate = collate_right_pad(start.chat.pad_id)
    batch = cfg.sft.batch_size
    if cfg.sft.packing:  # rows of several pairs, each attending to itself: the loss of the same pairs padded
        packed = PackedExamples(train_set, max_len)
        train_loader = resumable_loader(packed, batch, seed=cfg.seed, collate_fn=collate_packed(start.chat.pad_id))
    else:
        train_loader = resumable_loader(train_set, batch, seed=cfg.seed, collate_fn=collate)
    val_loader = resumable_loader(val_set, batch, seed=cfg.seed, shuffle=False, collate_fn=collate)
    module = LMModule.from_base(
        base.gpt, dropout=cfg.model.dropout, compile=cfg.trainer.compile, **training.finetune_hparams(cfg.sft)
    )

    with tracking.stage_run("sft", cfg, cfg.sft, parent_run_id, resume_run_id) as stage:
        start.started(stage.run_id)
        if resume_run_id is None:
            stage.set_tags(
                {
                    tracking.PARENT_MODEL_TAG: base_uri,
                    tracking.TOKENIZER_HASH_TAG: (base.meta.tokenizer_sha256 or "")[:12],
                }
            )
            stage.log_metrics(
                {"data/train_examples": len(train_set), "data/truncated": train_set.truncated}
                | ({"data/packed_rows": len(packed), "data/packed_fill": packed.fill} if cfg.sft.packing else {})
                | training.parameter_counts(module.model)
            )
        trainer = training.build_trainer(cfg, cfg.sft, stage_dir, tracking.lightning_logger(stage.run_id))
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt)
        best = training.best_checkpoint(trainer)  # early stopping: the figures of the weights that get published
        final = {k: float(v) for k, v in trainer.validate(module, val_loader, ckpt_path=best, verbose=False)[0].items()}
        stage.log_metrics({"final/val_loss": final["val/loss"], "final/val_ppl": final["val/ppl"]})

        gpt = training.trained(trainer, module).export().eval()  # whole weights under FSDP too, LoRA merged
        prompts = [r["prompt"] for r in datasets.load_split(cfg.data.data_dir, "eval_prompts", "test")]
        prompts = prompts[: cfg.sft.sample_prompts]
        if prompts and tracking.is_rank_zero():  # the samples are logged by rank 0 alone
            generator = Generator(gpt, base.tokenizer, precision=cfg.trainer.precision)
            completions = generator.complete(prompts, decoding("greedy", max_new_tokens=48))
            samples = [{"prompt": p, "completion": c} for p, c in zip(prompts, completions, strict=True)]
            stage.log_dict({"samples": samples}, "samples/sft_samples.json")

        uri, version, model_dir = training.publish(start, gpt, registered="sft", kind="causal_lm")
        return training.TrainResult(stage.run_id, uri, version, final, model_dir)
