"""The independent judges: VADER and AFINN for English prompts, snownlp for Chinese ones, chosen by the prompt's
language."""

from __future__ import annotations

import pytest

from alignops.evaluation.judges import afinn, chinese, english, judge, judge_all


def test_english_positive_text_beats_negative_text() -> None:
    good, bad = (
        judge("What a wonderful, kind and helpful answer!", "en"),
        judge("This is awful, useless and rude.", "en"),
    )
    assert 0.5 < good <= 1 and -1 <= bad < -0.5
    assert judge("The train leaves at noon.", "en") == 0.0  # neutral


def test_chinese_prompts_go_to_snownlp() -> None:
    good, bad = judge("这个东西真心很赞，质量很好，非常满意", "zh"), judge("质量太差了，很失望，不会再买", "zh")
    assert -1 <= bad < 0 < good <= 1
    assert good == chinese("这个东西真心很赞，质量很好，非常满意")


def test_the_prompt_language_chooses_the_judge_not_the_response_script() -> None:
    # two answers to one Chinese prompt, one in English: both on snownlp's scale, so they can be compared
    answers = ["很好", "very good"]
    assert judge_all(answers, ["zh", "zh"]) == [chinese("很好"), chinese("very good")]
    # and an English prompt answered with Han characters stays with VADER (which knows no Chinese: neutral)
    assert judge("很好", "en") == english("很好") == 0.0
    with pytest.raises(ValueError, match="prompt languages"):
        judge_all(answers, ["zh"])


def test_no_letters_is_neutral() -> None:
    assert judge("", "en") == 0.0 and judge("  ...!!  ", "zh") == 0.0


def test_afinn_is_a_second_independent_english_judge() -> None:
    assert afinn("What a wonderful, kind gesture!") > 0 > afinn("This is awful, useless and rude.")
    assert afinn("The train leaves at noon.") == 0.0
    # a word list without rules: it disagrees with VADER where VADER's negation rule applies
    assert afinn("I am not happy") > 0 > english("I am not happy")
