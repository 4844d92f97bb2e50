"""Human ratings and pairwise judgments of one model version, aggregated: mean rating, win rate (wins, losses,
ties apart) with Wilson and bootstrap intervals, inter-annotator agreement (Krippendorff's alpha), and the counts
behind each figure.

    metrics = summarize(store.ratings(uri), store.judgments(uri))
    metrics = summarize_version(uri)      # the same, read from the preference store (counts 0 when there is none)
    # {"human/ratings": 12, "human/raters": 3, "human/mean_rating": 3.9, "human/mean_helpful": 4.1, ...,
    #  "human/judgments": 30, "human/win_rate_wins": 15, "_losses": 10, "_ties": 5, "human/win_rate": 0.6,
    #  "human/win_rate_low": 0.41, "human/win_rate_high": 0.77, "human/win_rate_boot_low": ..., "_boot_high": ...,
    #  "human/rating_alpha": 0.41, ...}

Rows are anything with the preference store's fields (alignops.feedback.store RatingRow, Judgment):
ratings: .annotator, .response_id, .scores ({"helpful": 1..5, ...}); judgments: .annotator, .prompt_id,
.other_uri, .outcome (1 win, 0.5 tie, 0 loss against the other model's response).

Missing stays missing: with no ratings there is no mean rating (the key is absent), never a 0; counts are
always there, so "0 ratings" is said out loud. Agreement is absent where it is undefined (no item rated twice,
or no variation at all).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import permutations
from typing import Any, Literal

from alignops.evaluation.metrics import win_rate_of

Level = Literal["nominal", "ordinal", "interval"]
HUMAN_WIN_RATE = "human/win_rate"  # and its _wins, _losses, _ties, _low, _high, _boot_low, _boot_high


def krippendorff_alpha(units: Iterable[Mapping[Hashable, float]], level: Level = "interval") -> float | None:
    """Krippendorff's alpha over units, each a mapping coder -> value (a coder who did not rate a unit is absent).

    alpha = 1 - D_o / D_e from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability"): every ordered pair of values within a unit of m values adds 1 / (m - 1); units with a
    single value are not pairable and drop out. 1 is perfect agreement, 0 agreement at chance. None when alpha
    is undefined: fewer than two pairable values, or no disagreement is possible (one value throughout)."""
    if level not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"level must be nominal, ordinal or interval, got {level!r}")
    coincidence: dict[tuple[float, float], float] = defaultdict(float)
    for unit in units:
        values = [v for v in unit.values() if v is not None]
        m = len(values)
        if m < 2:
            continue
        for a, b in permutations(values, 2):
            coincidence[(a, b)] += 1.0 / (m - 1)
    totals: Counter[float] = Counter()
    for (a, _), weight in coincidence.items():
        totals[a] += weight
    n = sum(totals.values())
    if n < 2 or len(totals) < 2:
        return None
    values = sorted(totals)
    delta = _distance(level, values, totals)
    observed = sum(w * delta[a, b] for (a, b), w in coincidence.items())
    expected = sum(totals[a] * totals[b] * delta[a, b] for a in values for b in values) / (n - 1)
    return 1.0 - observed / expected


def _distance(level: Level, values: list[float], totals: Mapping[float, float]) -> dict[tuple[float, float], float]:
    """The squared difference function delta^2(c, k) of the measurement level."""
    if level == "nominal":
        return {(a, b): float(a != b) for a in values for b in values}
    if level == "interval":
        return {(a, b): float(a - b) ** 2 for a in values for b in values}
    # ordinal: the number of values between c and k (each counted by its frequency), the two ends counting half
    rank = {v: i for i, v in enumerate(values)}
    delta = {}
    for a in values:
        for b in values:
            lo, hi = sorted((rank[a], rank[b]))
            between = sum(totals[values[g]] for g in range(lo, hi + 1)) - (totals[a] + totals[b]) / 2
            delta[a, b] = between**2
    return delta


def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def rating_metrics(ratings: Sequence[Any]) -> dict[str, float]:
    """human/ratings and human/raters always; with ratings, the mean of each row's mean score
    (human/mean_rating), each criterion's mean (human/mean_<criterion>) and ordinal alpha across annotators
    rating the same response on the same criterion (human/rating_alpha), where defined."""
    out = {"human/ratings": float(len(ratings)), "human/raters": float(len({_get(r, "annotator") for r in ratings}))}
    if not ratings:
        return out
    by_criterion: dict[str, list[int]] = defaultdict(list)
    row_means = []
    units: dict[tuple[Any, str], dict[str, float]] = defaultdict(dict)
    for row in ratings:
        scores = _get(row, "scores")
        if not scores:
            continue
        row_means.append(sum(scores.values()) / len(scores))
        for criterion, score in scores.items():
            by_criterion[criterion].append(score)
            units[(_get(row, "response_id"), criterion)][_get(row, "annotator")] = float(score)
    if row_means:
        out["human/mean_rating"] = sum(row_means) / len(row_means)
    for criterion, scores in sorted(by_criterion.items()):
        out[f"human/mean_{criterion}"] = sum(scores) / len(scores)
    alpha = krippendorff_alpha(units.values(), "ordinal")  # 1..5 Likert scores: ordered, distances unknown
    if alpha is not None:
        out["human/rating_alpha"] = alpha
    return out


def judgment_metrics(judgments: Sequence[Any]) -> dict[str, float]:
    """human/judgments and human/judges always; with judgments, wins, losses and ties against the other models'
    responses and the win rate over the decisive ones (ties are no evidence) with its 95% Wilson and bootstrap
    intervals (alignops.evaluation.metrics.WinRate), and ordinal alpha across annotators judging the same
    comparison."""
    out = {
        "human/judgments": float(len(judgments)),
        "human/judges": float(len({_get(j, "annotator") for j in judgments})),
    }
    if not judgments:
        return out
    # the bootstrap resamples comparisons (a prompt against one other model), all their annotators together
    comparisons = [(_get(j, "prompt_id"), _get(j, "other_uri")) for j in judgments]
    out |= win_rate_of([float(_get(j, "outcome")) for j in judgments], comparisons).as_metrics(HUMAN_WIN_RATE)
    units: dict[tuple[Any, Any], dict[str, float]] = defaultdict(dict)
    for j in judgments:
        units[(_get(j, "prompt_id"), _get(j, "other_uri"))][_get(j, "annotator")] = float(_get(j, "outcome"))
    alpha = krippendorff_alpha(units.values(), "ordinal")
    if alpha is not None:
        out["human/judgment_alpha"] = alpha
    return out


def summarize(ratings: Sequence[Any], judgments: Sequence[Any]) -> dict[str, float]:
    """Every human/... metric of one model version: counts always, figures only where there is data."""
    return rating_metrics(ratings) | judgment_metrics(judgments)


def summarize_version(model_uri: str) -> dict[str, float]:
    """human/... metrics of a model version from the preference store; counts of 0 when it holds none."""
    from pathlib import Path

    from alignops.feedback.store import Store, database_url

    url = database_url()
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return summarize([], [])  # no store yet: nobody has rated anything (and evaluation creates none)
    store = Store(url)
    try:
        return summarize(store.ratings(model_uri), store.judgments(model_uri))
    finally:
        store.close()
