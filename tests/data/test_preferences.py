"""Tests of alignops.data.preferences: rankings to pairs, pair weights, the length baseline, the human ceiling,
tokenized pairs and their collate. A byte-level BPE tokenizer (vocab 300) is trained on fixture strings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignops.data.loaders import pad_id, resumable_loader, special_id
from alignops.data.preferences import (
    Pair,
    PairDataset,
    RankingBatches,
    collate_pairs,
    collate_rankings,
    expand_rankings,
    length_baseline_accuracy,
    single_rater_agreement,
)
from alignops.data.tokenizer import chat_template, load_tokenizer, train_tokenizer


def ranking(responses: list[str], order: list, agreement: float | None = None, **extra) -> dict:
    return {
        "prompt": "Write a tweet.",
        "responses": responses,
        "ranking": order,
        "annotator": "test",
        "source": "test/src",
        "derived": False,
        "agreement": agreement,
        **extra,
    }


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    words = "the a cat dog sat on mat good bad film book was very long short tweet write".split()  # noqa: SIM905
    texts = [" ".join(words[(i * k) % len(words)] for k in range(1, 3 + i % 7)) for i in range(200)]
    texts += [chat_template("Write a tweet.", "good film")] * 5
    info = train_tokenizer(texts, vocab_size=300, min_frequency=1, out_dir=tmp_path_factory.mktemp("tok"))
    return load_tokenizer(Path(info.path))


def test_expand_rankings_ties_full_rankings_and_skips() -> None:
    tied = ranking(["a", "b", "c"], [0, [1, 2]], agreement=0.8)
    assert expand_rankings([tied]) == [
        Pair("Write a tweet.", "a", "b", "test/src", 0.8),
        Pair("Write a tweet.", "a", "c", "test/src", 0.8),
    ]  # the tied 1 and 2 form no pair

    full = ranking(["w", "x", "y", "z"], [2, 0, 3, 1])
    pairs = expand_rankings([full])
    assert [(p.chosen, p.rejected) for p in pairs] == [
        ("y", "w"),
        ("y", "z"),
        ("y", "x"),
        ("w", "z"),
        ("w", "x"),
        ("z", "x"),
    ]
    assert all(p.weight == 1.0 for p in pairs)  # agreement null: weight 1

    skipped = ranking(["a", "b"], [0, 1], agreement=0.9, skip=True)
    assert expand_rankings([skipped]) == []
    assert len(expand_rankings([tied, skipped, full])) == 2 + 0 + 6


def test_expand_rankings_weights() -> None:
    records = [ranking(["a", "b"], [1, 0], agreement=0.7), ranking(["c", "d"], [0, 1], agreement=None)]
    assert [p.weight for p in expand_rankings(records)] == [0.7, 0.7]  # unknown: the mean, never the most
    assert [p.weight for p in expand_rankings(records, weight_by=None)] == [1.0, 1.0]
    assert expand_rankings(records)[0].chosen == "b"
    with pytest.raises(ValueError, match="weight_by"):
        expand_rankings(records, weight_by="votes")


def test_length_baseline_accuracy() -> None:
    pairs = [
        Pair("p", "longer one", "short", "s", 1.0),  # longer chosen: 1
        Pair("p", "short", "longer one", "s", 1.0),  # shorter chosen: 0
        Pair("p", "abc", "xyz", "s", 1.0),  # same length: 0.5
        Pair("p", "a longer answer", "no", "s", 0.2),  # weights do not count: 1
    ]
    assert length_baseline_accuracy(pairs) == pytest.approx(2.5 / 4)
    with pytest.raises(ValueError, match="at least one pair"):
        length_baseline_accuracy([])


def test_single_rater_agreement_weighs_records_by_their_pairs() -> None:
    records = [
        ranking(["a", "b", "c"], [0, 1, 2], agreement=0.9),  # 3 pairs
        ranking(["a", "b"], [1, 0], agreement=0.5),  # 1 pair
        ranking(["a", "b"], [0, 1], agreement=None),  # unknown: left out
        ranking(["a", "b"], [0, 1], agreement=0.1, skip=True),  # skipped: no pairs
        ranking(["a", "b", "c"], [0, [1, 2]], agreement=0.6),  # 2 pairs (the tie forms none)
    ]
    assert single_rater_agreement(records) == pytest.approx((0.9 * 3 + 0.5 * 1 + 0.6 * 2) / 6)
    assert single_rater_agreement(records[2:4]) is None
    assert single_rater_agreement([]) is None


def test_pair_dataset_tokenizes_the_chat_template(tok) -> None:
    pairs = [
        Pair("Write a tweet.", "good film", "bad", "s", 0.75),
        Pair("cat?", "the cat sat on the mat", "a", "s", 1.0),
    ]
    ds = PairDataset(pairs, tok, max_len=64)
    assert len(ds) == 2 and ds.truncated == 0
    item = ds[0]
    assert set(item) == {"chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels", "weight"}
    assert item["chosen_ids"].dtype == torch.long and item["weight"].item() == 0.75
    decode = lambda ids: tok.decode(ids.tolist(), skip_special_tokens=False)  # noqa: E731
    assert decode(item["chosen_ids"]) == chat_template("Write a tweet.", "good film")
    assert decode(item["rejected_ids"]) == chat_template("Write a tweet.", "bad")
    # the prompt's tokens are exactly the ones a policy is given
    prompt_ids = tok.encode(chat_template("Write a tweet.")).ids
    assert item["chosen_ids"][: len(prompt_ids)].tolist() == prompt_ids
    # labels: the response only (DPO sums its log-probs), the prompt ignored
    assert item["chosen_labels"][: len(prompt_ids)].tolist() == [-100] * len(prompt_ids)
    assert item["chosen_labels"][len(prompt_ids) :].tolist() == item["chosen_ids"][len(prompt_ids) :].tolist()

    batch = collate_pairs(pad_id(tok))([ds[0], ds[1]])
    assert set(batch) == {
        "chosen_ids", "chosen_mask", "chosen_labels", "rejected_ids", "rejected_mask", "rejected_labels", "weight"
    }  # fmt: skip
    assert (batch["chosen_labels"][batch["chosen_mask"] == 0] == -100).all()
    T = max(len(ds[i][k]) for i in range(2) for k in ("chosen_ids", "rejected_ids"))
    for side in ("chosen", "rejected"):
        assert batch[f"{side}_ids"].shape == batch[f"{side}_mask"].shape == (2, T)  # one T for both sides
        for row in range(2):
            n = len(ds[row][f"{side}_ids"])
            assert batch[f"{side}_mask"][row].tolist() == [1] * n + [0] * (T - n)
            assert torch.equal(batch[f"{side}_ids"][row, :n], ds[row][f"{side}_ids"])
            assert (batch[f"{side}_ids"][row, n:] == pad_id(tok)).all()
    assert batch["weight"].dtype == torch.float32 and batch["weight"].tolist() == [0.75, 1.0]


def test_pair_dataset_truncates_like_sft(tok) -> None:
    long_prompt = " ".join(["the cat sat on the mat"] * 8)
    long_response = " ".join(["a good film book"] * 8)
    ds = PairDataset([Pair(long_prompt, long_response, "bad", "s", 1.0)], tok, max_len=24)
    assert ds.truncated == 1
    item = ds[0]
    assert len(item["chosen_ids"]) == len(item["rejected_ids"]) == 24
    prompt_ids = tok.encode(chat_template(long_prompt)).ids
    response_ids = tok.encode(long_response + "<|endoftext|>").ids
    # chosen: half the window keeps the prompt's end, the rest the response's start
    assert item["chosen_ids"].tolist() == prompt_ids[-12:] + response_ids[:12]
    # rejected: the short response is whole (ending in <|endoftext|>), the prompt keeps what it leaves
    bad_ids = tok.encode("bad<|endoftext|>").ids
    assert item["rejected_ids"].tolist() == prompt_ids[-(24 - len(bad_ids)) :] + bad_ids
    assert item["rejected_ids"][-1].item() == special_id(tok, "<|endoftext|>")


def test_ranking_batches_keep_every_pair_of_a_ranking_together(tok) -> None:
    records = [ranking(["a", "b", "c"], [0, 1, 2]), ranking(["d", "e"], [1, 0]), ranking(["f", "g", "h"], [2, 1, 0])]
    pairs = expand_rankings(records)
    assert [p.ranking for p in pairs] == [0, 0, 0, 1, 2, 2, 2]
    grouped = RankingBatches(pairs, PairDataset(pairs, tok, max_len=64))
    assert len(grouped) == 3 and [len(grouped[i]) for i in range(3)] == [3, 1, 3]
    loader = resumable_loader(grouped, 2, seed=0, shuffle=True, collate_fn=collate_rankings(pad_id(tok)))
    sizes = sorted(batch["chosen_ids"].size(0) for batch in loader)
    assert sizes in ([3, 4], [1, 6])  # two rankings then one: whole rankings, never a ranking split over batches
    assert sum(sizes) == len(pairs)


def test_empty_negatives_put_an_empty_reply_below_each_rankings_worst_answer() -> None:
    from alignops.data.preferences import expand_rankings, with_empty_negatives

    records = [
        {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [2, 0, 1], "source": "s", "agreement": 0.6},
        {"prompt": "q", "responses": ["x", "y"], "ranking": [[0, 1]], "source": "s", "agreement": None},  # a tie
    ]
    pairs = expand_rankings(records)
    added = with_empty_negatives(pairs)[len(pairs) :]
    # ranking 0 orders c > a > b: its worst, b, beats the empty reply; the all-tied ranking 1 has no worst
    assert [(p.prompt, p.chosen, p.rejected, p.weight, p.ranking) for p in added] == [("p", "b", "", 1.0, 0)]
