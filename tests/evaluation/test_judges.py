"""The independent judges: VADER for English, snownlp for Chinese, on one -1..1 scale."""

from __future__ import annotations

from alignops.evaluation.judges import chinese, english, judge, judge_all


def test_english_positive_text_beats_negative_text() -> None:
    good, bad = judge("What a wonderful, kind and helpful answer!"), judge("This is awful, useless and rude.")
    assert 0.5 < good <= 1 and -1 <= bad < -0.5
    assert judge("The train leaves at noon.") == 0.0  # neutral


def test_chinese_goes_to_snownlp() -> None:
    good, bad = judge("这个东西真心很赞，质量很好，非常满意"), judge("质量太差了，很失望，不会再买")
    assert -1 <= bad < 0 < good <= 1
    assert good == chinese("这个东西真心很赞，质量很好，非常满意")  # read from the script
    assert judge("很好 good") == chinese("很好 good")  # mixed scripts: Han characters decide


def test_no_letters_is_neutral_and_lang_can_be_forced() -> None:
    assert judge("") == 0.0 and judge("  ...!!  ") == 0.0
    assert judge("great", lang="en") == english("great") > 0
    assert judge_all(["great", "terrible"])[0] > judge_all(["great", "terrible"])[1]
