"""Pretraining: next-token prediction on the packed corpus, from scratch; registers <prefix>-base.

    result = run(load_config("tiny"))      # or: alignops pretrain --preset tiny

Killed at any point, the same command resumes from the last checkpoint (weights, optimizer, schedule, RNG and
data position) in the same MLflow run.

On several devices (`--set trainer.devices=2 --set trainer.strategy=ddp`, or 'fsdp' on GPUs) pretrain.batch_size
is per device; rank 0 alone tracks and registers (see alignops.stages.training).
"""

from __future__ import annotations

from dataclasses import asdict

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.data import datasets, versioning
from alignops.stages import training
from alignops.stages.data import require_valid


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> training.TrainResult:
    require_valid(cfg)
    from alignops.data.loaders import PackedBlocks, encode_corpus, resumable_loader, unigram_baseline_loss
    from alignops.data.tokenizer import load_tokenizer
    from models.gpt import GPTConfig
    from models.lm import LMModule

    tok_path, tok_sha = training.tokenizer_path(cfg)
    tokenizer = load_tokenizer(tok_path)
    data_version = versioning.read_version(cfg.data.data_dir)  # what this run reads, not what data.dvc says
    key = {"cfg": cfg.pretrain, "model": cfg.model, "trainer": cfg.trainer, "data": data_version, "tok": tok_sha,
           "seed": cfg.seed}  # fmt: skip
    start = training.begin(
        cfg, "pretrain", cfg.pretrain, key, data_version=data_version, tokenizer=tok_path, tokenizer_sha256=tok_sha
    )
    corpus = datasets.load_split(cfg.data.data_dir, "corpus", "train")
    train_ids = encode_corpus([r["text"] for r in training.spread(corpus, cfg.pretrain.max_train_docs)], tokenizer)
    val_ids = encode_corpus([r["text"] for r in datasets.load_split(cfg.data.data_dir, "corpus", "val")], tokenizer)
    m = cfg.model
    gpt_config = GPTConfig(
        vocab_size=tokenizer.get_vocab_size(),
        block_size=m.block_size,
        n_layer=m.n_layer,
        n_head=m.n_head,
        n_embd=m.n_embd,
        dropout=m.dropout,
        bias=m.bias,
    )
    module = LMModule(asdict(gpt_config), compile=cfg.trainer.compile, **training.optim_hparams(cfg.pretrain))
    batch = cfg.pretrain.batch_size
    train_loader = resumable_loader(PackedBlocks(train_ids, m.block_size), batch, seed=cfg.seed)
    val_loader = resumable_loader(PackedBlocks(val_ids, m.block_size), batch, seed=cfg.seed, shuffle=False)

    with tracking.stage_run("pretrain", cfg, cfg.pretrain, parent_run_id, start.resume_run_id) as stage:
        start.started(stage.run_id)
        baseline = unigram_baseline_loss(train_ids, val_ids, gpt_config.vocab_size)
        if start.resume_run_id is None:
            stage.log_params({"model": asdict(gpt_config), "trainer": cfg.trainer.model_dump(mode="json")})
            stage.set_tags({tracking.TOKENIZER_HASH_TAG: tok_sha[:12]})
            stage.log_metrics(
                {
                    "data/train_tokens": train_ids.numel(),
                    "data/val_tokens": val_ids.numel(),
                    "model/params": module.model.num_params(),
                    "model/flops_per_token": module.model.flops_per_token(),
                    "val/unigram_loss": baseline,
                }
            )
        trainer = training.build_trainer(cfg, cfg.pretrain, start.stage_dir, tracking.lightning_logger(stage.run_id))
        trainer.fit(module, train_loader, val_loader, ckpt_path=start.checkpoint)
        best = training.best_checkpoint(trainer)  # early stopping: the figures of the weights that get published
        final = {k: float(v) for k, v in trainer.validate(module, val_loader, ckpt_path=best, verbose=False)[0].items()}
        stage.log_metrics({"final/val_loss": final["val/loss"], "final/val_ppl": final["val/ppl"]})

        uri, version, model_dir = training.publish(
            start,
            training.trained(trainer, module).model,  # every rank calls it: under FSDP it gathers the shards
            registered="base",
            kind="causal_lm",
            tags={tracking.TOKENIZER_HASH_TAG: tok_sha[:12]},
        )
        metrics = final | {"val/unigram_loss": baseline}
        return training.TrainResult(stage.run_id, uri, version, metrics, model_dir)
