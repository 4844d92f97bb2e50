"""Named-entity evaluation: entity-level precision, recall and F1 per type and micro/macro (seqeval, CoNLL
rules), character accuracy, the tag confusion matrix; the trained tagger as a callable; and the bag-of-words
baseline every neural figure is reported beside.

    tagger = Tagger.from_dir(model_folder)                        # a registered ner model, either backbone
    predicted = tagger.tag([r["text"] for r in records])           # one tag per character
    metrics = scores([r["tags"] for r in records], predicted)      # {"entity_f1_micro": ..., "f1_PER": ...}
    baseline = fit_baseline(train_records, window=2)               # TF-IDF over a character window + logistic regr.
    metrics_bow = scores(truth, baseline_tags(baseline, texts, window=2))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops import tracking
from alignops.data.ner import ENTITY_TYPES, TAGS, entities

KIND = "tagger"  # ModelMeta.kind of a ner model
BACKBONE_KEY = "backbone"  # ModelMeta.extra key: "gpt" or "minilm"


def scores(truth: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity-level precision/recall/F1 per type and micro/macro averaged (an entity counts only with its exact
    span and type), and the share of characters tagged right."""
    from seqeval.metrics import accuracy_score, classification_report

    report = classification_report(truth, predicted, output_dict=True, zero_division=0)
    out: dict[str, float] = {"char_accuracy": float(accuracy_score(truth, predicted))}
    for kind in ENTITY_TYPES:
        row = report.get(kind, {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
        out |= {f"precision_{kind}": row["precision"], f"recall_{kind}": row["recall"], f"f1_{kind}": row["f1-score"]}
        out[f"support_{kind}"] = float(row["support"])
    for average in ("micro", "macro"):
        row = report[f"{average} avg"]
        out |= {
            f"entity_precision_{average}": row["precision"],
            f"entity_recall_{average}": row["recall"],
            f"entity_f1_{average}": row["f1-score"],
        }
    return {k: float(v) for k, v in out.items()}


def confusion(truth: list[list[str]], predicted: list[list[str]]):
    """Character-level confusion matrix over TAGS: rows true tag, columns predicted."""
    import numpy as np

    index = {t: i for i, t in enumerate(TAGS)}
    matrix = np.zeros((len(TAGS), len(TAGS)), dtype=np.int64)
    for true_row, pred_row in zip(truth, predicted, strict=True):
        for t, p in zip(true_row, pred_row, strict=True):
            matrix[index[t], index[p]] += 1
    return matrix


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------------------
# The trained tagger


@dataclass
class Tagger:
    module: Any  # models.tagger.TokenTagger
    tokenizer: Any  # tokenizers.Tokenizer
    max_len: int
    pad_id: int

    @classmethod
    def from_dir(cls, folder: Path, max_len: int | None = None) -> Tagger:
        """A ner model folder (alignops.json kind 'tagger'), its backbone the own GPT or the MiniLM encoder."""
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        from alignops.artifacts import HEAD_FILE, META_FILE, TOKENIZER_FILE
        from alignops.config import OptimConfig
        from models.tagger import TokenTagger

        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("kind") != KIND:
            raise ValueError(f"{folder} holds a {meta.get('kind')!r} model, not a ner tagger (kind {KIND!r}).")
        backbone, hidden, limit = load_backbone(folder, meta["extra"][BACKBONE_KEY])
        module = TokenTagger(
            backbone, hidden, meta["labels"], optim={**OptimConfig().model_dump(), "warmup_steps": 0}, max_steps=1
        )  # inference only: the schedule is never used
        module.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        return cls(module.eval(), tokenizer, min(max_len or limit, limit), padding_id(tokenizer))

    def tag(self, texts: list[str], batch_size: int = 32) -> list[list[str]]:
        """One tag per character of each text."""
        import torch

        from alignops.data.loaders import collate_right_pad
        from alignops.data.tagging import character_tags, encode

        device = next(self.module.parameters()).device
        collate = collate_right_pad(self.pad_id)
        out: list[list[str]] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            encoded = [encode(self.tokenizer, t, self.max_len) for t in chunk]
            batch = collate([{"input_ids": torch.tensor(e.ids, dtype=torch.long)} for e in encoded])
            with torch.no_grad():
                ids = self.module.predict_ids(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            for e, row, text in zip(encoded, ids.cpu().tolist(), chunk, strict=True):
                out.append(character_tags(e, [TAGS[i] for i in row[: len(e.ids)]], len(text)))
        return out

    def entities(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        """The entities found in each text: [{"type", "text", "start", "end"}]."""
        return [
            [{"type": kind, "text": text[s:e], "start": s, "end": e} for kind, s, e in entities(tags)]
            for text, tags in zip(texts, self.tag(texts), strict=True)
        ]


def load_backbone(folder: Path, backbone: str) -> tuple[Any, int, int]:
    """(backbone module, hidden size, longest input in tokens) from a model folder."""
    if backbone == "minilm":
        from models.encoder import Encoder

        encoder = Encoder.load(folder)
        return encoder, encoder.hidden_size, encoder.max_positions
    from models.gpt import GPT

    gpt = GPT.from_hf(folder)
    return gpt, gpt.config.n_embd, gpt.config.block_size


def padding_id(tokenizer) -> int:
    """The own tokenizer's <|pad|>, else BERT's [PAD]."""
    for token in ("<|pad|>", "[PAD]"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    raise ValueError("the tokenizer has neither <|pad|> nor [PAD]; a ner model needs one of them")


def evaluate(tagger: Tagger, records: list[dict]) -> tuple[dict[str, float], Any]:
    """(entity metrics, character confusion matrix) of the tagger on records {text, tags}."""
    truth = [r["tags"] for r in records]
    predicted = tagger.tag([r["text"] for r in records])
    return scores(truth, predicted), confusion(truth, predicted)


# ---------------------------------------------------------------------------------------------------------
# The bag-of-words baseline: each character classified alone from the characters around it


def window_features(text: str, index: int, window: int) -> list[str]:
    """The bag of words of one character: each neighbour with its offset, plus the character bigrams around it."""
    padded = "^" * window + text + "$" * window
    center = index + window
    feats = [f"{k}:{padded[center + k]}" for k in range(-window, window + 1)]
    feats += [f"{k}:{padded[center + k : center + k + 2]}" for k in range(-window, window)]
    return feats


def _documents(texts: list[str], window: int) -> list[list[str]]:
    return [window_features(t, i, window) for t in texts for i in range(len(t))]


def fit_baseline(records: list[dict], window: int, seed: int = 0):
    """TF-IDF over each character's window features, then multinomial logistic regression to its tag."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    documents = _documents([r["text"] for r in records], window)
    labels = [t for r in records for t in r["tags"]]
    pipeline = make_pipeline(
        TfidfVectorizer(analyzer=lambda feats: feats, min_df=2, sublinear_tf=True),
        LogisticRegression(max_iter=300, C=4.0, random_state=seed),
    )
    return pipeline.fit(documents, labels)


def baseline_tags(pipeline, texts: list[str], window: int) -> list[list[str]]:
    predicted = list(pipeline.predict(_documents(texts, window)))
    out, at = [], 0
    for t in texts:
        out.append([str(p) for p in predicted[at : at + len(t)]])
        at += len(t)
    return out


# ---------------------------------------------------------------------------------------------------------
# The whole suite, as the ner stage and the evaluate stage both run it


@dataclass
class NerReport:
    metrics: dict[str, float]  # <prefix>/..., baseline/..., <prefix>/entity_f1_margin_over_baseline
    figure: Path  # the character confusion matrix


def report(cfg, tagger: Tagger, test_records: list[dict], prefix: str, out_dir: Path) -> NerReport:
    """The tagger's entity scores on test_records beside the bag-of-words baseline's (fit on
    cfg.ner.baseline_train_examples train sentences), and the confusion figure written into out_dir."""
    import time

    from alignops.data import datasets
    from alignops.evaluation import figures
    from alignops.stages.training import spread

    found, matrix = evaluate(tagger, test_records)
    started = time.perf_counter()
    train = spread(datasets.load_split(cfg.data.data_dir, "ner", "train"), cfg.ner.baseline_train_examples)
    pipeline = fit_baseline(train, cfg.ner.baseline_window, seed=cfg.seed)
    fit_seconds = time.perf_counter() - started
    texts = [r["text"] for r in test_records]
    baseline = scores([r["tags"] for r in test_records], baseline_tags(pipeline, texts, cfg.ner.baseline_window))
    metrics = prefixed(found, prefix) | prefixed(baseline | {"fit_seconds": fit_seconds}, "baseline")
    metrics[f"{prefix}/entity_f1_margin_over_baseline"] = found["entity_f1_micro"] - baseline["entity_f1_micro"]
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = figures.confusion_matrix(
        matrix.tolist(), TAGS, TAGS, out_dir / "ner_confusion_matrix.png", "named entities: characters by tag"
    )
    return NerReport(metrics, figure)


def is_tagger(folder: Path) -> bool:
    from alignops.artifacts import META_FILE

    meta = folder / META_FILE
    return meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("kind") == KIND


def evaluate_registered(
    cfg, uri: str, folder: Path, parent_run_id: str | None = None, precision: str | None = None
) -> tuple[str, dict[str, float]]:
    """The evaluate stage for a ner model: eval/... entity scores on the ner test split, the baseline beside them,
    the figure; the version is tagged with the run like every evaluated model. precision: what the caller runs the
    tagger at (alignops.precision.inference_precision), for the run's tag. Returns (run id, metrics)."""
    import hashlib

    from alignops import settings
    from alignops.data import datasets

    test = spread_test(cfg)
    with tracking.stage_run("evaluate", cfg, cfg.evaluate, parent_run_id) as stage:
        stage.set_tags(tracking.evaluation_run_tags(uri, KIND, None, precision=precision))
        out_dir = settings.home() / "evaluations" / stage.run_id
        found = report(cfg, Tagger.from_dir(folder, cfg.ner.max_len), test, "eval", out_dir)
        path = datasets.split_files(cfg.data.data_dir)["ner/test"]
        stage.log_datasets({"ner/test": (path, hashlib.md5(path.read_bytes()).hexdigest())}, context="evaluation")
        stage.log_metrics(found.metrics)
        stage.log_artifact(found.figure, "figures")
        if tracking.ModelRef.is_registry_uri(uri):
            tracking.mark_evaluated(uri, stage.run_id, None)
        return stage.run_id, found.metrics


def spread_test(cfg) -> list[dict]:
    """The ner test sentences scored: all, or cfg.ner.max_test_examples spread over the split."""
    from alignops.data import datasets
    from alignops.stages.training import spread

    return spread(datasets.load_split(cfg.data.data_dir, "ner", "test"), cfg.ner.max_test_examples)
