"""Evaluation arithmetic: classification metrics (torchmetrics), answers parsed into labels, perplexity, win rates
with a Wilson interval.

    m = classification_metrics(["positive", "negative"], ["positive", None], labels=["negative", "positive"])
    m.accuracy, m.f1, m.per_class["positive"]["f1"], m.unparseable_rate     # None = an answer that did not parse
    flat = m.as_metrics("eval/")          # {"eval/accuracy": ..., "eval/f1_positive": ..., ...}
    parse_label("Positive.", ANSWER_WORDS)   # "positive"
    win_rate([0.3, 0.1], [0.2, 0.1])         # WinRate(rate=0.75, low=..., high=..., n=2): ties count half

An unparseable answer counts as wrong: it is scored as an extra "unparseable" class that no example has, so it
lowers accuracy and the recall of its true class, and is no false positive of any real class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from alignops.data.datasets import SENTIMENT_ANSWER

# label -> the words that name it in an answer, from the answers the SFT data teaches ("Positive.", "正面。")
ANSWER_WORDS: dict[str, tuple[str, ...]] = {
    label: tuple(sorted({answers[label].rstrip(".。").lower() for answers in SENTIMENT_ANSWER.values()}))
    for label in SENTIMENT_ANSWER["en"]
}

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def parse_label(answer: str, words: Mapping[str, Sequence[str]] = ANSWER_WORDS) -> str | None:
    """The label whose word comes first in the answer (case-insensitive), or None when no label word occurs."""
    text = answer.lower()
    found = [(text.find(w), label) for label, ws in words.items() for w in ws if w and w in text]
    return min(found)[1] if found else None


@dataclass(frozen=True)
class LabelMetrics:
    """Classification figures over n examples; precision/recall/f1 are macro averages over the real labels."""

    labels: list[str]
    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    unparseable_rate: float
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    # rows: true label; columns: predicted label, then one "unparseable" column
    confusion: list[list[int]] = field(default_factory=list)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Flat metric names: <prefix>accuracy, precision, recall, f1, unparseable_rate, {f1,precision,recall}_<label>,
        examples."""
        out = {f"{prefix}{k}": getattr(self, k) for k in ("accuracy", "precision", "recall", "f1", "unparseable_rate")}
        for label, values in self.per_class.items():
            out |= {f"{prefix}{k}_{label}": values[k] for k in ("precision", "recall", "f1")}
        return out | {f"{prefix}examples": float(self.n)}


def classification_metrics(
    targets: Sequence[str], predictions: Sequence[str | None], labels: Sequence[str]
) -> LabelMetrics:
    """Accuracy, macro and per-class precision/recall/F1 and the confusion matrix; None predictions are wrong."""
    import torch
    from torchmetrics.functional.classification import (
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    labels = list(labels)
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    if not targets:
        raise ValueError("no examples to score")
    unknown = sorted({t for t in targets if t not in labels} | {p for p in predictions if p not in (None, *labels)})
    if unknown:
        raise ValueError(f"labels {unknown} are not among {labels}")
    k = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    target = torch.tensor([index[t] for t in targets])
    preds = torch.tensor([k if p is None else index[p] for p in predictions])  # k: the unparseable class
    options = dict(num_classes=k + 1, average=None)
    per = {
        "precision": multiclass_precision(preds, target, **options)[:k],
        "recall": multiclass_recall(preds, target, **options)[:k],
        "f1": multiclass_f1_score(preds, target, **options)[:k],
    }
    confusion = multiclass_confusion_matrix(preds, target, num_classes=k + 1)[:k]  # no example is truly unparseable
    support = torch.bincount(target, minlength=k)
    return LabelMetrics(
        labels=labels,
        n=len(targets),
        accuracy=float((preds == target).float().mean()),
        precision=float(per["precision"].mean()),
        recall=float(per["recall"].mean()),
        f1=float(per["f1"].mean()),
        unparseable_rate=float((preds == k).float().mean()),
        per_class={
            label: {name: float(values[i]) for name, values in per.items()} | {"support": float(support[i])}
            for i, label in enumerate(labels)
        },
        confusion=confusion.tolist(),
    )


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats per token); inf rather than an overflow error."""
    return math.exp(loss) if loss < 700 else math.inf


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n (Wilson 1927): unlike p +- z*se it stays inside [0, 1]
    and is not degenerate at 0 or n successes. successes may be fractional (ties counted half)."""
    if n <= 0:
        raise ValueError("a proportion needs n >= 1")
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


@dataclass(frozen=True)
class WinRate:
    rate: float  # (wins + ties / 2) / n
    low: float  # 95% Wilson interval
    high: float
    n: int
    ties: int


def win_rate_of(outcomes: Sequence[float]) -> WinRate:
    """Outcomes 1 (win), 0.5 (tie), 0 (loss) -> the win rate, ties counted half, with its Wilson interval."""
    if not outcomes:
        raise ValueError("no outcomes: a win rate needs at least one comparison")
    if any(o not in (0, 0.5, 1) for o in outcomes):
        raise ValueError("outcomes must be 1 (win), 0.5 (tie) or 0 (loss)")
    wins = float(sum(outcomes))
    low, high = wilson_interval(wins, len(outcomes))
    return WinRate(wins / len(outcomes), low, high, len(outcomes), sum(1 for o in outcomes if o == 0.5))


def win_rate(scores: Sequence[float], other_scores: Sequence[float], tolerance: float = 1e-9) -> WinRate:
    """How often scores[i] beats other_scores[i] (same prompt, two models); within `tolerance` is a tie."""
    if len(scores) != len(other_scores):
        raise ValueError(f"{len(scores)} scores against {len(other_scores)}: compare the same prompts")
    outcomes = [0.5 if abs(a - b) <= tolerance else float(a > b) for a, b in zip(scores, other_scores, strict=True)]
    return win_rate_of(outcomes)
