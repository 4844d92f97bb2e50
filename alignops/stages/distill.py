"""Distillation: a smaller student (compress.distill: layers, width, heads) trained with Lightning on a causal
LM's temperature-softened next-token distributions plus the LM loss, on corpus blocks and SFT pairs, registered
beside the original (tag alignops.compression = distilled, the original as parent) and measured against it like
every compressed version (alignops.evaluation.compression).

    result = run(load_config("tiny"))                 # or: alignops distill --preset tiny
    result = run(cfg, model="models:/alignops-sft/1")
    print(result.table())

It runs on one device (a GPU when there is one) whatever trainer.devices says: the stage runs in one process.
A killed run resumes from its last checkpoint like every training stage. alignops compress runs it too, as its
`distill` method (models/distill.py holds the model).
"""

from __future__ import annotations

import dataclasses

from alignops import tracking
from alignops.artifacts import TOKENIZER_FILE
from alignops.config import PipelineConfig
from alignops.data import datasets, versioning
from alignops.evaluation.compression import Bench, CompressionError, deltas
from alignops.stages import training
from alignops.stages.compression import (
    Compressed,
    CompressResult,
    Source,
    compress_by,
    load_source,
    require_gpt,
    version_tags,
)
from alignops.stages.data import require_valid

TAG = "distilled"  # the version's alignops.compression tag


def run(cfg: PipelineConfig, model: str | None = None, parent_run_id: str | None = None) -> CompressResult:
    """Distil one registered causal LM (compress.source_model by default) into a smaller student."""
    require_valid(cfg)
    return compress_by(cfg, load_source(cfg, model), {"distill": train_student}, "distill", parent_run_id)


def train_student(cfg: PipelineConfig, src: Source, bench: Bench, parent_run_id: str) -> Compressed:
    """Train, publish and measure the student of src (setup, build, fit, publish, as every training stage)."""
    import lightning as L
    from torch.utils.data import ConcatDataset

    from alignops.data import loaders
    from models.distill import DistillModel

    require_gpt(src, "distill")
    dc, original = cfg.compress.distill, src.model
    prefix = f"{cfg.tracking.model_prefix}-"
    if not src.registered.startswith(prefix):  # training.publish registers under <prefix>-<name>
        raise CompressionError(
            f"{src.uri}: a distilled version is registered beside its original, under tracking.model_prefix "
            f"{cfg.tracking.model_prefix!r}; distil a {prefix}... model, or set --set tracking.model_prefix=..."
        )
    teacher = original.gpt.config
    heads = dc.heads or teacher.n_head
    width = dc.width or teacher.n_embd
    if width % heads:
        raise CompressionError(
            f"compress.distill: width {width} is not divisible by {heads} heads; set compress.distill.heads."
        )
    student = dataclasses.replace(teacher, n_layer=dc.layers or max(1, teacher.n_layer // 2), n_embd=width,
                                  n_head=heads, dropout=cfg.model.dropout)  # fmt: skip
    data_version = versioning.read_version(cfg.data.data_dir)  # what this run reads, not what data.dvc says
    stage_dir = training.StageDir(
        "compress-distill",
        {"cfg": dc, "source": src.uri, "trainer": cfg.trainer, "data": data_version, "seed": cfg.seed},
    )
    resume_run_id, ckpt = stage_dir.resume_point()
    start = training.Start(
        cfg=cfg, stage="compress", section=cfg.compress, stage_dir=stage_dir, data_version=data_version,
        resume_run_id=resume_run_id, checkpoint=ckpt, tokenizer=src.folder / TOKENIZER_FILE,
        tokenizer_sha256=original.meta.tokenizer_sha256, parent=src.uri,
    )  # fmt: skip
    L.seed_everything(cfg.seed, verbose=False)

    tok, block = original.tokenizer, original.gpt.max_positions

    def split(name: str, docs: int | None, examples: int | None) -> ConcatDataset:
        corpus = training.spread(datasets.load_split(cfg.data.data_dir, "corpus", name), docs)
        sft = training.spread(datasets.load_split(cfg.data.data_dir, "sft", name), examples)
        return ConcatDataset(
            [
                loaders.PackedBlocks(loaders.encode_corpus([r["text"] for r in corpus], tok), block),
                loaders.SFTDataset(sft, tok, block),
            ]
        )

    train_set = split("train", dc.max_train_docs, dc.max_train_examples)
    val_set = split("val", None, None)
    collate = loaders.collate_right_pad(loaders.pad_id(tok))
    train_loader = loaders.resumable_loader(train_set, dc.batch_size, seed=cfg.seed, collate_fn=collate)
    val_loader = loaders.resumable_loader(val_set, dc.batch_size, seed=cfg.seed, shuffle=False, collate_fn=collate)
    module = DistillModel.from_teacher(
        original.gpt, student, temperature=dc.temperature, alpha=dc.alpha,
        compile=cfg.trainer.compile, **training.optim_hparams(dc),
    )  # fmt: skip

    with tracking.stage_run("compress-distill", cfg, cfg.compress, parent_run_id, resume_run_id) as stage:
        start.started(stage.run_id)
        # one process, one device: the other methods and the measures are not rank-aware, and Lightning's DDP
        # launcher would run this whole stage again on every other rank
        one = cfg.trainer.model_copy(update={"devices": 1, "num_nodes": 1, "strategy": "auto"})
        logger = tracking.lightning_logger(stage.run_id)
        trainer = training.build_trainer(cfg.model_copy(update={"trainer": one}), dc, stage_dir, logger)
        metrics: dict[str, float] = {}
        if resume_run_id is None:
            stage.log_params({"student": dataclasses.asdict(student)})
            stage.log_metrics(
                {"data/train_sequences": len(train_set), "model/student_params": module.model.num_params()}
            )
            before = trainer.validate(module, val_loader, verbose=False)[0]
            metrics |= {
                "distill/val_loss_start": float(before["val/loss"]),
                "distill/val_kl_start": float(before["val/kl"]),
            }
            stage.log_metrics(metrics)  # in the run at once: a resumed run no longer knows them
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt)
        best = training.best_checkpoint(trainer)  # early stopping: measure and publish the best checkpoint
        after = trainer.validate(module, val_loader, ckpt_path=best, verbose=False)[0]
        metrics |= {"distill/val_loss": float(after["val/loss"]), "distill/val_kl": float(after["val/kl"])}
        stage.log_metrics(metrics)
        student_gpt = training.trained(trainer, module).export().eval()
        stage.set_tags({tracking.COMPRESSION_TAG: TAG, tracking.PARENT_MODEL_TAG: src.uri})
        extra = {"compression": TAG, "source_stage": original.meta.stage, "student": dataclasses.asdict(student)}
        uri, version, model_dir = training.publish(
            start, student_gpt, registered=src.registered.removeprefix(prefix), kind="causal_lm", extra=extra,
            tags=version_tags(src, TAG),
        )  # fmt: skip
        figures = bench.measure(student_gpt, model_dir)
        stage.log_metrics(figures.metrics("compress/") | deltas(figures, bench.original))
        return Compressed("distill", TAG, uri, version, stage.run_id, model_dir, figures, metrics)
