"""Evaluation arithmetic: classification metrics (torchmetrics), answers parsed into labels, perplexity, win rates
with Wilson and bootstrap intervals.

    m = classification_metrics(["positive", "negative"], ["positive", None], labels=["negative", "positive"])
    m.accuracy, m.f1, m.per_class["positive"]["f1"], m.unparseable_rate     # None = an answer that did not parse
    flat = m.as_metrics("eval/")          # {"eval/accuracy": ..., "eval/f1_positive": ..., ...}
    parse_label("Positive.", ANSWER_WORDS)   # "positive"
    r = win_rate([0.3, 0.1], [0.2, 0.1])     # 1 win, 0 losses, 1 tie: rate 1.0 over 1 decisive comparison
    r.as_metrics("eval/win_rate_judge")       # _wins, _losses, _ties, the rate, _low/_high (Wilson), _boot_low/_high

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

# the evaluation's win rates against its baseline (alignops.stages.evaluate logs them, the promotion gate reads
# them), each with WinRate.as_metrics's _wins, _losses, _ties, _low, _high, _boot_low, _boot_high
JUDGE_WIN_RATE, AFINN_WIN_RATE, REWARD_WIN_RATE = "eval/win_rate_judge", "eval/win_rate_afinn", "eval/win_rate_reward"


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
    """Pairwise comparisons of one model's responses against another's: wins, losses and ties counted apart.

    rate = wins / (wins + losses): ties (identical or equally scored answers) are no evidence either way, so they
    are reported, never counted half (a model that ties everything would sit at exactly 0.5 with a narrowing
    interval). Two 95% intervals of the rate: Wilson's over the decisive comparisons, and a percentile bootstrap
    that resamples prompts (all of a prompt's comparisons together). With no decisive comparison there is no
    rate and both intervals are the uninformative [0, 1]."""

    wins: int
    losses: int
    ties: int
    rate: float | None
    low: float  # Wilson
    high: float
    boot_low: float  # bootstrap over prompts
    boot_high: float

    @property
    def decisive(self) -> int:
        return self.wins + self.losses

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    def as_metrics(self, name: str) -> dict[str, float]:
        """<name>_wins, _losses, _ties always; <name>, _low, _high, _boot_low, _boot_high when a rate exists."""
        out = {f"{name}_{k}": float(getattr(self, k)) for k in ("wins", "losses", "ties")}
        if self.rate is not None:
            out[name] = self.rate
            out |= {f"{name}_{k}": getattr(self, k) for k in ("low", "high", "boot_low", "boot_high")}
        return out


BOOTSTRAP_RESAMPLES = 2000
OUTCOMES = (0, 0.5, 1)  # loss, tie, win


def bootstrap_interval(
    outcomes: Sequence[float],
    groups: Sequence[object] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile bootstrap interval of wins / (wins + losses), resampling groups (prompts) with replacement:
    a prompt judged several times moves as one. Resamples without a decisive comparison carry no rate and are
    left out; [0, 1] when no resample has one. Seeded: the same outcomes give the same interval."""
    import numpy as np

    keys = list(range(len(outcomes))) if groups is None else list(groups)
    if len(keys) != len(outcomes):
        raise ValueError(f"{len(outcomes)} outcomes but {len(keys)} groups")
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    wins, decisive = np.zeros(len(index)), np.zeros(len(index))
    for key, outcome in zip(keys, outcomes, strict=True):
        wins[index[key]] += outcome == 1
        decisive[index[key]] += outcome != 0.5
    draws = np.random.default_rng(seed).integers(0, len(index), size=(resamples, len(index)))
    w, d = wins[draws].sum(axis=1), decisive[draws].sum(axis=1)
    rates = w[d > 0] / d[d > 0]
    if rates.size == 0:
        return 0.0, 1.0
    return float(np.quantile(rates, 0.025)), float(np.quantile(rates, 0.975))


def win_rate_of(outcomes: Sequence[float], groups: Sequence[object] | None = None) -> WinRate:
    """Outcomes 1 (win), 0.5 (tie), 0 (loss), one per comparison; groups: the prompt of each comparison (default:
    each its own) for the bootstrap."""
    if not outcomes:
        raise ValueError("no outcomes: a win rate needs at least one comparison")
    if any(o not in OUTCOMES for o in outcomes):
        raise ValueError("outcomes must be 1 (win), 0.5 (tie) or 0 (loss)")
    wins, losses = sum(1 for o in outcomes if o == 1), sum(1 for o in outcomes if o == 0)
    ties = len(outcomes) - wins - losses
    if wins + losses == 0:
        return WinRate(wins, losses, ties, None, 0.0, 1.0, 0.0, 1.0)
    low, high = wilson_interval(wins, wins + losses)
    boot_low, boot_high = bootstrap_interval(outcomes, groups)
    return WinRate(wins, losses, ties, wins / (wins + losses), low, high, boot_low, boot_high)


def win_rate(scores: Sequence[float], other_scores: Sequence[float], tolerance: float = 1e-9) -> WinRate:
    """How often scores[i] beats other_scores[i] (same prompt, two models); within `tolerance` is a tie."""
    if len(scores) != len(other_scores):
        raise ValueError(f"{len(scores)} scores against {len(other_scores)}: compare the same prompts")
    outcomes = [0.5 if abs(a - b) <= tolerance else float(a > b) for a, b in zip(scores, other_scores, strict=True)]
    return win_rate_of(outcomes)
