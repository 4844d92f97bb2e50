"""Entity-level scores (seqeval) against hand-counted cases, the tag confusion matrix, character <-> token
alignment on a byte-level BPE, and the bag-of-words window baseline."""

from __future__ import annotations

import pytest

from alignops.data import ner
from alignops.data.tagging import IGNORE_INDEX, character_tags, encode, token_labels
from alignops.evaluation.ner import baseline_tags, confusion, fit_baseline, scores, window_features

# 江泽民在北京会见新华社记者 : PER 0-3, LOC 4-6, ORG 8-11
TRUTH = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "B-ORG", "I-ORG", "I-ORG", "O", "O"]


def test_entity_scores_hand_counted() -> None:
    # PER right; LOC span too short (a miss and a false positive); ORG missed; one spurious PER at 12
    predicted = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "O", "O", "O", "O", "O", "O", "O", "B-PER"]
    got = scores([TRUTH], [predicted])
    # true 3 entities, predicted 3, matching exactly 1 (the PER at 0-3)
    assert got["entity_precision_micro"] == pytest.approx(1 / 3)
    assert got["entity_recall_micro"] == pytest.approx(1 / 3)
    assert got["entity_f1_micro"] == pytest.approx(1 / 3)
    # PER: 1 of 2 predicted right, 1 of 1 found -> P 0.5, R 1, F1 2/3; LOC: 0; ORG: 0
    assert (got["precision_PER"], got["recall_PER"]) == (pytest.approx(0.5), pytest.approx(1.0))
    assert got["f1_PER"] == pytest.approx(2 / 3)
    assert got["f1_LOC"] == 0.0 and got["f1_ORG"] == 0.0
    assert got["entity_f1_macro"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert got["char_accuracy"] == pytest.approx(8 / 13)  # characters 5, 8, 9, 10, 12 are wrong
    assert got["support_ORG"] == 1.0


def test_perfect_and_empty_predictions() -> None:
    assert scores([TRUTH], [TRUTH])["entity_f1_micro"] == 1.0
    nothing = scores([TRUTH], [["O"] * len(TRUTH)])
    assert nothing["entity_recall_micro"] == 0.0 and nothing["entity_f1_macro"] == 0.0


def test_confusion_counts_characters() -> None:
    predicted = ["O"] * len(TRUTH)
    matrix = confusion([TRUTH], [predicted])
    assert matrix.sum() == len(TRUTH)
    assert matrix[ner.TAGS.index("B-PER"), ner.TAGS.index("O")] == 1
    assert matrix[ner.TAGS.index("I-ORG"), ner.TAGS.index("O")] == 2
    assert matrix[0, 0] == TRUTH.count("O")


def test_alignment_on_a_byte_level_bpe() -> None:
    """Chinese characters are 3 bytes: a character may take several tokens, a token several characters."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["北京北京北京北京北京", "江泽民江泽民"] * 20, trainer=trainer)
    text = "江泽民在北京会见新华社记者。"
    tags = TRUTH + ["O"]
    enc = encode(tok, text, max_len=64)
    labels = token_labels(enc, tags)
    assert labels.count(IGNORE_INDEX) > 0  # unmerged characters: only the first of their byte tokens is learned
    # "北京" is one token: labeled with its first character's tag, and read back as B-LOC I-LOC
    predicted = [ner.TAGS[i] if i != IGNORE_INDEX else "O" for i in labels]
    assert character_tags(enc, predicted, len(text)) == tags
    # cut off after 4 tokens: the rest of the characters are predicted O
    short = encode(tok, text, max_len=4)
    assert character_tags(short, ["B-PER"] * 4, len(text))[-3:] == ["O", "O", "O"]


def test_window_features_and_baseline_learn_the_names() -> None:
    assert window_features("北京", 0, 1) == ["-1:^", "0:北", "1:京", "-1:^北", "0:北京"]
    records = [
        {"text": "江泽民在北京。", "tags": ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]},
        {"text": "北京有新华社。", "tags": ["B-LOC", "I-LOC", "O", "B-ORG", "I-ORG", "I-ORG", "O"]},
    ] * 5
    pipeline = fit_baseline(records, window=2)
    predicted = baseline_tags(pipeline, ["新华社在北京。"], window=2)
    assert [len(p) for p in predicted] == [7]
    assert scores([["B-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC", "O"]], predicted)["entity_f1_micro"] > 0.4
