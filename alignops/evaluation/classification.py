"""Held-out sentiment classification (classification test split): a classifier predicts with its head, a causal LM
answers the SFT data's sentiment question and its answer is parsed into a label (unparseable = wrong).

    scored, rows = classify_held_out(cfg, model)   # LabelMetrics, one prediction row per example
    scored.as_metrics("eval/")                     # eval/accuracy, precision, recall, f1, f1_<label>, ...
"""

from __future__ import annotations

from typing import Any

from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.evaluation.samples import sample_id
from alignops.stages.training import spread

# the classification set's labels, in a classifier head's order: the data contract's answers
LABELS = sorted(datasets.SENTIMENT_ANSWER["en"])


def classify_held_out(cfg: PipelineConfig, model) -> tuple[Any, list[dict[str, Any]]]:
    """(LabelMetrics, one prediction row per example) on the held-out classification set."""
    from alignops.evaluation.metrics import classification_metrics, parse_label
    from alignops.evaluation.scoring import classify, generate_responses

    ec = cfg.evaluate
    records = spread(datasets.load_split(cfg.data.data_dir, "classification", "test"), ec.max_classification_examples)
    texts = [r["text"] for r in records]
    if model.meta.kind == "classifier":
        labels = list(model.meta.labels or LABELS)
        trained_len = model.meta.extra.get("config", {}).get("classify", {}).get("max_len")
        context = model.gpt.max_positions
        answers = classify(model, texts, labels, min(trained_len or context, context), ec.batch_size)
        predicted: list[str | None] = list(answers)
    else:
        labels = LABELS
        prompts = [datasets.SENTIMENT_PROMPT[r["lang"]].format(text=r["text"]) for r in records]
        answers = generate_responses(
            model.gpt, model.tokenizer, prompts, ec.answer_tokens, ec.batch_size, sample=False
        ).texts
        predicted = [parse_label(a) for a in answers]
    rows = [
        {"sample_id": sample_id(r["text"]), "text": r["text"], "lang": r["lang"], "label": r["label"],
         "answer": a, "predicted": p, "correct": p == r["label"]}
        for r, a, p in zip(records, answers, predicted, strict=True)
    ]  # fmt: skip
    return classification_metrics([r["label"] for r in records], predicted, labels), rows
