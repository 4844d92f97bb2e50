"""Tests of alignops.stages.reward_bias: planted reward models that read length or prefer silence are refused."""

from __future__ import annotations

import pytest

from alignops.data.preferences import Pair
from alignops.stages.reward_bias import BiasBounds, BiasEvidence, bias_reasons, measure

GOOD, BAD = "good", "bad"


def words(text: str) -> int:
    return len(text.split())


def pairs() -> list[Pair]:
    """People preferred the reply that says "good"; half the time it is the longer one, half the shorter; 12 pairs
    are as long as each other."""
    out = []
    for i in range(12):
        filler = " ok" * (i % 4)
        out.append(Pair(f"p{i}", f"{GOOD}{filler}", f"{BAD}{filler}", "vader", 1.0))  # same length
        long, short = f"{GOOD} fine fine fine fine", f"{BAD}"
        chosen, rejected = (long, short) if i % 2 else (f"{GOOD}", f"{BAD} fine fine fine fine")
        out.append(Pair(f"q{i}", chosen, rejected, "vader", 1.0))
    return out


REPLIES = {f"p{i}": "good ok ok" for i in range(6)}


def sentiment(prompts, responses):  # prefers "good", does not read length
    return [1.0 if GOOD in r else -1.0 if BAD in r else 0.0 for r in responses]


def length_biased(prompts, responses):  # the planted length-biased reward model
    return [0.1 * words(r) + 0.01 * sentiment([], [r])[0] for r in responses]


def likes_silence(prompts, responses):  # prefers "good", but likes an empty reply even more
    return [2.0 if not r else sentiment([], [r])[0] for r in responses]


def test_a_preference_model_passes():
    evidence = measure(sentiment, pairs(), REPLIES, words)
    assert evidence.matched_pairs == 12 and evidence.matched_accuracy == 1.0
    assert abs(evidence.length_corr) < 0.3
    assert bias_reasons(evidence, BiasBounds()) == []


def test_a_planted_length_biased_model_is_refused():
    evidence = measure(length_biased, pairs(), REPLIES, words)
    assert evidence.length_corr > 0.9
    reasons = bias_reasons(evidence, BiasBounds())
    assert any("correlate +1.00 with response length" in r and "rewards longer responses" in r for r in reasons), (
        reasons
    )
    # it still ranks the equal-length pairs by the tiny sentiment term: that check alone would have passed it
    assert evidence.matched_accuracy == 1.0


def test_length_matched_accuracy_at_chance_is_refused():
    evidence = BiasEvidence(length_corr=0.0, matched_accuracy=0.5, matched_pairs=40, empty_score=-1, typical_score=0)
    [reason] = bias_reasons(evidence, BiasBounds())
    assert "40 length-matched pairs" in reason
    few = BiasEvidence(length_corr=0.0, matched_accuracy=0.0, matched_pairs=3, empty_score=-1, typical_score=0)
    assert bias_reasons(few, BiasBounds()) == []  # too few to judge


def test_a_model_that_rewards_an_empty_reply_is_refused():
    evidence = measure(likes_silence, pairs(), REPLIES, words)
    assert evidence.empty_score == 2.0 and evidence.typical_score == 1.0
    [reason] = bias_reasons(evidence, BiasBounds(max_abs_length_corr=1.0))
    assert "an empty reply scores 2.000" in reason and "PPO would learn to stop" in reason


def test_measure_needs_data():
    with pytest.raises(ValueError, match="held-out pairs"):
        measure(sentiment, [], REPLIES, words)
