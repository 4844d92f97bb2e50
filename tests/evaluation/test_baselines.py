"""The baselines: Kneser-Ney n-gram perplexity against a hand-computed toy corpus, and the bag-of-words classifier
on a tiny separable set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignops.evaluation.baselines import NGramLM, bag_of_words, classification_baseline, language_model_baselines

# stream 0 1 0 1 0 2 over a vocabulary of 4 (token 3 never occurs); discount d = 0.75
TOY = [0, 1, 0, 1, 0, 2]
D = 0.75
# bigrams: (0,1) x2, (1,0) x2, (0,2) x1. Continuation counts (distinct left neighbours): 1 -> 1, 0 -> 1, 2 -> 1,
# so 3 continuations over 3 types; the unigram level interpolates with 1/4:
P1_SEEN = (1 - D) / 3 + D * 3 / 3 * (1 / 4)  # tokens 0, 1, 2: 0.0833 + 0.1875
P1_UNSEEN = D * 3 / 3 * (1 / 4)  # token 3
# context 0: counts 1 -> 2, 2 -> 1 (total 3, 2 types); context 1: 0 -> 2 (total 2, 1 type)
P_1_AFTER_0 = (2 - D) / 3 + D * 2 / 3 * P1_SEEN
P_3_AFTER_1 = 0 + D * 1 / 2 * P1_UNSEEN


def test_bigram_probabilities_match_the_hand_computed_kneser_ney():
    lm = NGramLM.fit(TOY, order=2, vocab_size=4, discount=D)
    got = lm.probabilities(np.array([[0], [1]]), np.array([1, 3]))
    assert got == pytest.approx([P_1_AFTER_0, P_3_AFTER_1])
    # no context: the continuation (unigram) level
    assert lm.probabilities(np.zeros((4, 0)), np.arange(4)) == pytest.approx([P1_SEEN] * 3 + [P1_UNSEEN])


def test_bigram_perplexity_of_a_block_matches_the_hand_computation():
    lm = NGramLM.fit(TOY, order=2, vocab_size=4, discount=D)
    loss, n = lm.loss(np.array([[0, 1, 3]]))  # targets 1 | 0 and 3 | 1
    assert n == 2
    assert math.exp(loss) == pytest.approx(math.exp(-(math.log(P_1_AFTER_0) + math.log(P_3_AFTER_1)) / 2))


def test_every_context_is_a_distribution_over_the_vocabulary():
    lm = NGramLM.fit(TOY, order=3, vocab_size=4, discount=D)
    for context in ([0, 1], [1, 0], [2, 2], [3, 3]):  # seen, seen, unseen contexts
        rows = np.array([context] * 4)
        assert lm.probabilities(rows, np.arange(4)).sum() == pytest.approx(1.0)


def test_trigram_beats_bigram_on_a_stream_with_second_order_structure():
    rng = np.random.default_rng(0)
    # token t = (t-2) + 1 mod 5 on every second step: the previous token alone does not predict it
    stream = [0, 0]
    for _ in range(4000):
        stream.append((stream[-2] + 1) % 5 if rng.random() < 0.9 else int(rng.integers(5)))
    train, test = np.array(stream[:3000]), np.array(stream[3000 : 3001 + 64 * 15])
    blocks = test[: 64 * 15].reshape(15, 64)
    metrics = language_model_baselines(train, blocks, vocab_size=5, model_ppl=2.0)
    assert metrics["eval/ppl_trigram"] < metrics["eval/ppl_bigram"] - 1.0
    assert metrics["eval/ppl_margin"] == pytest.approx(metrics["eval/ppl_trigram"] - 2.0)


def test_bad_inputs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="token ids must lie"):
        NGramLM.fit([0, 5], order=2, vocab_size=4)
    with pytest.raises(ValueError, match="at most 1 context"):
        NGramLM.fit(TOY, order=2, vocab_size=4).probabilities(np.array([[0, 1]]), np.array([2]))


GOOD = ["a wonderful film", "wonderful acting", "truly wonderful", "a great joy", "great fun", "joy and delight"]
BAD = ["a terrible film", "terrible acting", "truly awful", "an awful bore", "boring mess", "a dull mess"]


def test_bag_of_words_separates_a_separable_set():
    train = [{"text": t, "label": "positive"} for t in GOOD] + [{"text": t, "label": "negative"} for t in BAD]
    test = [
        {"text": "wonderful joy", "label": "positive"},
        {"text": "awful terrible mess", "label": "negative"},
        {"text": "great delight", "label": "positive"},
        {"text": "dull boring film", "label": "negative"},
    ]
    metrics = classification_baseline(train, test, ["negative", "positive"], model_f1=0.75)
    assert metrics["eval/accuracy_bow"] == 1.0 and metrics["eval/f1_bow"] == 1.0
    assert metrics["eval/f1_margin"] == pytest.approx(-0.25)


def test_bag_of_words_needs_every_label_in_train():
    with pytest.raises(ValueError, match="no training example of \\['positive'\\]"):
        bag_of_words(["a", "b"], ["negative", "negative"], ["c"], ["negative", "positive"])
