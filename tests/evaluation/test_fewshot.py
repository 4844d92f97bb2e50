"""Few-shot prompt assembly (exact strings for k = 0, 1, 2 with a seed), the seeded draw, and the k-shot row."""

from __future__ import annotations

import random

import pytest

from alignops.evaluation.fewshot import draw_demonstrations, fewshot_prompt, score_shot

QUESTION = "Is the sentiment of this movie review positive or negative?\n\n"
QUERY = {"text": "A slow, lovely film.", "label": "positive", "lang": "en"}
TRAIN = [
    {"text": "Dreadful.", "label": "negative", "lang": "en"},
    {"text": "Pure joy.", "label": "positive", "lang": "en"},
    {"text": "很好看。", "label": "positive", "lang": "zh"},
    {"text": "Too long.", "label": "negative", "lang": "en"},
]
ENGLISH = [r for r in TRAIN if r["lang"] == "en"]


OPEN = "<|user|>\nIs the sentiment of this movie review positive or negative?\n\nA slow, lovely film.<|assistant|>\n"
JOY = "<|user|>\nIs the sentiment of this movie review positive or negative?\n\nPure joy.<|assistant|>\nPositive.\n\n"
DREADFUL = (
    "<|user|>\nIs the sentiment of this movie review positive or negative?\n\nDreadful.<|assistant|>\nNegative.\n\n"
)


@pytest.mark.parametrize(("k", "expected"), [(0, OPEN), (1, JOY + OPEN), (2, JOY + DREADFUL + OPEN)])
def test_prompt_for_k_shots_with_seed_7_is_exactly(k, expected):
    demos = draw_demonstrations([QUERY], TRAIN, k, seed=7)[0]
    assert demos == random.Random(7).sample(ENGLISH, k)  # one seeded draw over the query's language
    assert fewshot_prompt(QUERY, demos) == expected


def test_prompt_written_out_for_two_fixed_demonstrations():
    prompt = fewshot_prompt(QUERY, [TRAIN[0], TRAIN[1]])
    assert prompt == (
        "<|user|>\nIs the sentiment of this movie review positive or negative?\n\nDreadful.<|assistant|>\nNegative.\n\n"
        "<|user|>\nIs the sentiment of this movie review positive or negative?\n\nPure joy.<|assistant|>\nPositive.\n\n"
        "<|user|>\nIs the sentiment of this movie review positive or negative?\n\nA slow, lovely film.<|assistant|>\n"
    )
    zh = fewshot_prompt({"text": "难看", "label": "negative", "lang": "zh"}, [TRAIN[2]])
    assert zh == (
        "<|user|>\n这条评论的情感是正面还是负面？\n\n很好看。<|assistant|>\n正面。\n\n"
        "<|user|>\n这条评论的情感是正面还是负面？\n\n难看<|assistant|>\n"
    )


def test_draw_is_seeded_in_the_query_language_and_refuses_too_few_examples():
    queries = [QUERY, {"text": "难看", "label": "negative", "lang": "zh"}]
    assert draw_demonstrations(queries, TRAIN, 1, seed=3) == draw_demonstrations(queries, TRAIN, 1, seed=3)
    assert draw_demonstrations(queries, TRAIN, 1, seed=3)[1] == [TRAIN[2]]  # the only Chinese example
    draws = {tuple(d["text"] for d in draw_demonstrations([QUERY], TRAIN, 3, seed=s)[0]) for s in range(20)}
    assert len(draws) > 1  # the seed changes the order
    with pytest.raises(ValueError, match="2-shot needs 2 train examples in language 'zh'"):
        draw_demonstrations(queries, TRAIN, 2, seed=0)


def test_shot_score_counts_unparseable_as_wrong_with_intervals_around_the_estimates():
    gold = ["positive", "negative"] * 10
    predicted = ["positive", "negative"] * 8 + [None, None, "negative", "positive"]
    row = score_shot(4, gold, predicted, ["negative", "positive"], truncated=5)
    assert (row.k, row.n) == (4, 20)
    assert row.accuracy == pytest.approx(16 / 20) and row.unparseable_rate == pytest.approx(2 / 20)
    assert row.truncated_rate == pytest.approx(5 / 20)
    assert row.accuracy_low < row.accuracy < row.accuracy_high and row.f1_low <= row.f1 <= row.f1_high
    assert row.as_metrics()["fewshot/accuracy_k4"] == row.accuracy
