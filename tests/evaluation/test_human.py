"""Human-rating aggregation: Krippendorff's alpha against the textbook example, win rates with their interval,
agreement, and missing data that stays missing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from alignops.evaluation.human import judgment_metrics, krippendorff_alpha, rating_metrics, summarize
from alignops.evaluation.metrics import wilson_interval


def _units(*coders: list[int | None]) -> list[dict[str, int]]:
    """Coder rows (None: that coder did not rate the unit) -> one {coder: value} mapping per unit."""
    return [{f"c{c}": v for c, v in enumerate(column) if v is not None} for column in zip(*coders, strict=True)]


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units, values
# 1..5, some missing. Published: nominal 0.743, ordinal 0.815, interval 0.849.
N = None
TEXTBOOK = _units(
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
)


@pytest.mark.parametrize(("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_matches_the_textbook_example(level: str, published: float) -> None:
    assert krippendorff_alpha(TEXTBOOK, level) == pytest.approx(published, abs=5e-4)


def test_alpha_at_the_extremes_and_where_it_is_undefined() -> None:
    assert krippendorff_alpha(_units([1, 2, 3, 4], [1, 2, 3, 4]), "interval") == pytest.approx(1.0)
    # two coders who always say the opposite: systematic disagreement, below chance
    assert krippendorff_alpha(_units([1, 5, 1, 5], [5, 1, 5, 1]), "interval") < 0
    assert krippendorff_alpha(_units([3, 3, 3], [3, 3, 3])) is None  # no variation: nothing to agree on
    assert krippendorff_alpha(_units([1, 2, 3], [N, N, N])) is None  # nobody rated the same unit twice
    assert krippendorff_alpha([]) is None
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(TEXTBOOK, "ratio")


@dataclass(frozen=True)
class Rating:  # the fields of alignops.feedback.store.RatingRow that aggregation reads
    annotator: str
    response_id: int
    scores: dict[str, int]


@dataclass(frozen=True)
class Judgment:  # ... and of alignops.feedback.store.Judgment
    annotator: str
    prompt_id: int
    other_uri: str
    outcome: float


def test_missing_human_data_stays_missing() -> None:
    metrics = summarize([], [])
    assert metrics == {"human/ratings": 0, "human/raters": 0, "human/judgments": 0, "human/judges": 0}
    assert "human/mean_rating" not in metrics and "human/win_rate" not in metrics  # absent, not 0


def test_ratings_are_averaged_per_criterion_with_their_agreement() -> None:
    ratings = [
        Rating("ann", 1, {"helpful": 4, "correct": 2, "harmless": 5}),
        Rating("bob", 1, {"helpful": 4, "correct": 4, "harmless": 5}),
        Rating("ann", 2, {"helpful": 1, "correct": 1, "harmless": 4}),
    ]
    m = rating_metrics(ratings)
    assert (m["human/ratings"], m["human/raters"]) == (3, 2)
    assert m["human/mean_rating"] == pytest.approx((11 / 3 + 13 / 3 + 6 / 3) / 3)
    assert m["human/mean_helpful"] == pytest.approx(3.0) and m["human/mean_correct"] == pytest.approx(7 / 3)
    # only response 1 was rated twice: its helpful and harmless agree, its correct does not
    assert m["human/rating_alpha"] == pytest.approx(
        krippendorff_alpha([{"ann": 4, "bob": 4}, {"ann": 2, "bob": 4}, {"ann": 5, "bob": 5}], "ordinal")
    )
    assert "human/rating_alpha" not in rating_metrics(ratings[2:])  # a single rater: agreement undefined


def test_judgments_give_a_win_rate_with_its_interval() -> None:
    judgments = [Judgment("ann", p, "models:/m-sft/1", 1.0) for p in range(6)]
    judgments += [Judgment("bob", 0, "models:/m-sft/1", 0.5), Judgment("bob", 1, "models:/m-sft/1", 0.0)]
    m = judgment_metrics(judgments)
    assert (m["human/judgments"], m["human/judges"]) == (8, 2)
    assert (m["human/win_rate_wins"], m["human/win_rate_losses"], m["human/win_rate_ties"]) == (6, 1, 1)
    assert m["human/win_rate"] == pytest.approx(6 / 7)  # bob's tie is no evidence either way
    assert (m["human/win_rate_low"], m["human/win_rate_high"]) == pytest.approx(wilson_interval(6, 7))
    # the bootstrap resamples the 6 comparisons (prompt, other model): prompt 1 (ann wins, bob loses) moves as one
    assert m["human/win_rate_boot_low"] < m["human/win_rate"] <= m["human/win_rate_boot_high"] == 1.0
    assert "human/judgment_alpha" in m  # prompts 0 and 1 were judged by both
    as_dicts = [{"annotator": "ann", "prompt_id": 1, "other_uri": "x", "outcome": 1}]  # plain dicts work too
    assert judgment_metrics(as_dicts)["human/win_rate"] == 1.0
    ties = [Judgment(name, 0, "models:/m-sft/1", 0.5) for name in ("ann", "bob")]
    assert "human/win_rate" not in judgment_metrics(ties)  # all ties: no rate, the counts say why
    assert judgment_metrics(ties)["human/win_rate_ties"] == 2
