"""Evaluation arithmetic against hand-computed cases: classification metrics with unparseable answers, answer
parsing, perplexity, the Wilson and bootstrap intervals and win rates (wins, losses, ties apart)."""

from __future__ import annotations

import math

import pytest

from alignops.evaluation.metrics import (
    ANSWER_WORDS,
    bootstrap_interval,
    classification_metrics,
    parse_label,
    perplexity,
    wilson_interval,
    win_rate,
    win_rate_of,
)

LABELS = ["negative", "positive"]


def test_metrics_of_a_hand_counted_case_with_an_unparseable_answer() -> None:
    # true:      neg  neg  pos  pos  pos
    # predicted: neg  ???  pos  neg  ???       (??? = the answer did not parse)
    m = classification_metrics(
        ["negative", "negative", "positive", "positive", "positive"],
        ["negative", None, "positive", "negative", None],
        LABELS,
    )
    assert m.n == 5 and m.accuracy == pytest.approx(2 / 5)  # unparseable counts as wrong
    assert m.unparseable_rate == pytest.approx(2 / 5)
    # negative: TP 1, FP 1 (the positive called negative), FN 1 (the unparseable) -> P 1/2, R 1/2, F1 1/2
    # positive: TP 1, FP 0, FN 2 (one called negative, one unparseable)       -> P 1, R 1/3, F1 1/2
    assert m.per_class["negative"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m.per_class["positive"] == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3})
    assert (m.precision, m.recall, m.f1) == pytest.approx((0.75, 5 / 12, 0.5))  # macro: mean over the real labels
    assert m.confusion == [[1, 0, 1], [1, 1, 1]]  # rows true, columns predicted + unparseable
    flat = m.as_metrics("eval/")
    assert flat["eval/f1_positive"] == pytest.approx(0.5) and flat["eval/examples"] == 5
    assert flat["eval/unparseable_rate"] == pytest.approx(0.4)


def test_perfect_and_hopeless_answers() -> None:
    perfect = classification_metrics(["negative", "positive"], ["negative", "positive"], LABELS)
    assert (perfect.accuracy, perfect.f1, perfect.unparseable_rate) == (1.0, 1.0, 0.0)
    hopeless = classification_metrics(["negative", "positive"], [None, None], LABELS)
    assert (hopeless.accuracy, hopeless.f1, hopeless.unparseable_rate) == (0.0, 0.0, 1.0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="not among"):
        classification_metrics(["neutral"], ["negative"], LABELS)
    with pytest.raises(ValueError, match="2 targets but 1"):
        classification_metrics(["negative", "positive"], ["negative"], LABELS)


def test_answers_are_parsed_in_both_languages() -> None:
    assert ANSWER_WORDS == {"negative": ("negative", "负面"), "positive": ("positive", "正面")}  # from the SFT answers
    assert parse_label("Positive.") == "positive"
    assert parse_label(" negative, I think") == "negative"
    assert parse_label("正面。") == "positive" and parse_label("负面") == "negative"
    assert parse_label("Negative, not positive.") == "negative"  # the first label word wins
    assert parse_label("the film was long") is None and parse_label("") is None


def test_perplexity_is_exp_of_the_loss() -> None:
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50)) == pytest.approx(50)
    assert perplexity(1e4) == math.inf


def test_wilson_interval_known_values() -> None:
    # 8 of 10 at 95%: 0.4902 to 0.9433 (Newcombe 1998, method 3; also Agresti & Coull 1998)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # not degenerate at 0
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.4038, abs=1e-4)  # symmetric around 1/2
    with pytest.raises(ValueError):
        wilson_interval(1, 0)


def test_win_rates_count_wins_losses_and_ties_apart() -> None:
    rate = win_rate([0.9, 0.1, 0.5, 0.2], [0.1, 0.9, 0.5, 0.1])  # win, loss, tie, win
    assert (rate.wins, rate.losses, rate.ties, rate.decisive, rate.n) == (2, 1, 1, 3, 4)
    assert rate.rate == pytest.approx(2 / 3)  # the tie is no evidence: 2 of 3 decisive, not 2.5 of 4
    # Wilson over the 3 decisive comparisons, by hand: centre (2/3 + z^2/6), spread z*sqrt(2/27 + z^2/36), / (1 + z^2/3)
    assert (rate.low, rate.high) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    assert rate.as_metrics("eval/w") == {
        "eval/w_wins": 2.0, "eval/w_losses": 1.0, "eval/w_ties": 1.0, "eval/w": rate.rate, "eval/w_low": rate.low,
        "eval/w_high": rate.high, "eval/w_boot_low": rate.boot_low, "eval/w_boot_high": rate.boot_high,
    }  # fmt: skip
    with pytest.raises(ValueError, match="same prompts"):
        win_rate([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        win_rate_of([])


def test_identical_answers_are_no_evidence() -> None:
    same = win_rate([0.3, -0.2, 0.0], [0.3, -0.2, 0.0])  # an unchanged model: every comparison ties
    assert (same.wins, same.losses, same.ties, same.rate) == (0, 0, 3, None)
    assert (same.low, same.high, same.boot_low, same.boot_high) == (0.0, 1.0, 0.0, 1.0)  # nothing known
    assert same.as_metrics("eval/w") == {"eval/w_wins": 0.0, "eval/w_losses": 0.0, "eval/w_ties": 3.0}  # no rate


def test_bootstrap_intervals_of_hand_computed_cases() -> None:
    # ties never move the rate: every resample with a decisive comparison holds only wins
    assert bootstrap_interval([1, 1, 0.5]) == (1.0, 1.0)
    assert win_rate_of([1, 1, 0.5]).low == pytest.approx(wilson_interval(2, 2)[0])  # Wilson: 2 of 2, not 1.0
    # one win, one loss: resamples are WW, WL, LW, LL (rates 1, 0.5, 0.5, 0), a quarter each at either end
    assert bootstrap_interval([1, 0]) == (0.0, 1.0)
    # resampling is over prompts: ten judgments of ONE prompt move together, so every resample is that prompt
    ten = [1, 0] * 5
    assert bootstrap_interval(ten, groups=["p"] * 10) == (0.5, 0.5)
    low, high = bootstrap_interval(ten)  # ten prompts: the rate varies
    assert low < 0.5 < high
    assert bootstrap_interval([0.5, 0.5]) == (0.0, 1.0)  # no decisive comparison in any resample
    with pytest.raises(ValueError, match="groups"):
        bootstrap_interval([1, 0], groups=["a"])


def test_bootstrap_agrees_with_wilson_on_many_independent_prompts() -> None:
    rate = win_rate_of([1] * 120 + [0] * 80 + [0.5] * 50)
    assert rate.rate == 0.6 and (rate.low, rate.high) == pytest.approx(wilson_interval(120, 200))
    assert rate.boot_low == pytest.approx(rate.low, abs=0.015) and rate.boot_high == pytest.approx(rate.high, abs=0.015)
    assert win_rate_of([1] * 120 + [0] * 80 + [0.5] * 50) == rate  # seeded: reproducible
