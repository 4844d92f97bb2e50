"""Tests of alignops.data.loaders: packing, SFT label masking, classification examples, the resumable loader.

A byte-level BPE tokenizer (vocab 300) is trained on fixture strings; no network, no Lightning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from alignops.data.loaders import (
    IGNORE_INDEX,
    ClassificationDataset,
    PackedBlocks,
    SFTDataset,
    collate_right_pad,
    encode_corpus,
    pad_id,
    resumable_loader,
    special_id,
    unigram_baseline_loss,
)
from alignops.data.tokenizer import chat_template, load_tokenizer, train_tokenizer
from models.heads import last_token

WORDS = "the a cat dog sat ran on under mat log quickly slowly good bad film book red blue sky apple".split()  # noqa: SIM905


def fixture_texts(n: int = 300) -> list[str]:
    return [" ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 2 + i % 9)) + "." for i in range(n)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    info = train_tokenizer(fixture_texts(), vocab_size=300, min_frequency=1, out_dir=tmp_path_factory.mktemp("tok"))
    return load_tokenizer(Path(info.path))


def test_encode_corpus_and_packed_blocks(tok) -> None:
    texts = fixture_texts(40)
    ids = encode_corpus(texts, tok)
    eos = special_id(tok, "<|endoftext|>")
    assert ids.dtype == torch.long and ids.dim() == 1
    assert len(ids) == sum(len(tok.encode(t).ids) + 1 for t in texts)
    ends = (ids == eos).nonzero().flatten().tolist()
    assert len(ends) == len(texts) and ends[-1] == len(ids) - 1  # one separator after every text
    assert tok.decode(ids[: ends[0]].tolist()) == texts[0]

    T = 16
    blocks = PackedBlocks(ids, block_size=T)
    assert len(blocks) == (len(ids) - 1) // (T - 1) > 3
    items = [blocks[i] for i in range(len(blocks))]
    for item in items:
        assert item["input_ids"].shape == item["labels"].shape == item["attention_mask"].shape == (T,)
        assert torch.equal(item["input_ids"], item["labels"]) and bool(item["attention_mask"].all())
    # consecutive blocks share one token, so every next-token pair is a target exactly once
    for a, b in zip(items, items[1:], strict=False):
        assert a["input_ids"][-1] == b["input_ids"][0]
    rebuilt = torch.cat([items[0]["input_ids"]] + [it["input_ids"][1:] for it in items[1:]])
    assert torch.equal(rebuilt, ids[: len(rebuilt)])
    assert 0 <= len(ids) - len(rebuilt) < T - 1  # only the tail that cannot fill a block is left out
    with pytest.raises(IndexError):
        blocks[len(blocks)]
    with pytest.raises(ValueError, match="block_size"):
        PackedBlocks(ids, block_size=1)


def test_sft_labels_mask_prompt_and_padding(tok) -> None:
    records = [
        {"prompt": "name a red thing", "response": "an apple."},
        {"prompt": "what is blue", "response": "the sky is blue, and a book."},
    ]
    ds = SFTDataset(records, tok, max_len=64)
    assert len(ds) == 2 and ds.truncated == 0
    pad = pad_id(tok)
    batch = collate_right_pad(pad)([ds[0], ds[1]])
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    for row, record in enumerate(records):
        prompt_ids = tok.encode(chat_template(record["prompt"])).ids
        n_prompt, n_real = len(prompt_ids), int(batch["attention_mask"][row].sum())
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        assert ids[:n_prompt].tolist() == prompt_ids  # exactly what the model sees at generation time
        assert tok.decode(ids[:n_real].tolist(), skip_special_tokens=False) == chat_template(**record)
        ignored = (labels == IGNORE_INDEX).nonzero().flatten().tolist()
        assert ignored == list(range(n_prompt)) + list(range(n_real, ids.size(0)))  # prompt + padding, nothing else
        assert (ids[n_real:] == pad).all() and (batch["attention_mask"][row, n_real:] == 0).all()
        supervised = labels[labels != IGNORE_INDEX].tolist()
        assert tok.decode(supervised, skip_special_tokens=False) == record["response"] + "<|endoftext|>"


def test_sft_truncation_keeps_prompt_end_and_response_start(tok) -> None:
    long_prompt = " ".join(["the cat sat on the mat"] * 20) + " what is red"
    long_response = " ".join(["a red apple"] * 20)
    records = [
        {"prompt": long_prompt, "response": "apple."},  # long prompt, short response
        {"prompt": "say it", "response": long_response},  # short prompt, long response
        {"prompt": long_prompt, "response": long_response},  # both long: half the window each
    ]
    max_len = 32
    ds = SFTDataset(records, tok, max_len=max_len)
    assert len(ds) == 3 and ds.truncated == 3
    assistant = tok.encode(chat_template("x")).ids[-2:]  # "<|assistant|>", "\n"
    for i in range(3):
        ids, labels = ds[i]["input_ids"], ds[i]["labels"]
        assert len(ids) == max_len
        n_prompt = int((labels == IGNORE_INDEX).sum())
        assert ids[n_prompt - 2 : n_prompt].tolist() == assistant  # the prompt's end survives
        assert n_prompt < max_len
    full_response = tok.encode("apple.<|endoftext|>").ids
    assert ds[0]["input_ids"][-len(full_response) :].tolist() == full_response  # short response kept whole
    assert (
        ds[1]["input_ids"][: len(tok.encode(chat_template("say it")).ids)].tolist()
        == tok.encode(chat_template("say it")).ids
    )  # short prompt kept whole
    assert int((ds[2]["labels"] == IGNORE_INDEX).sum()) == max_len // 2
    response_start = tok.encode(long_response).ids[:4]
    assert ds[2]["input_ids"][max_len // 2 : max_len // 2 + 4].tolist() == response_start


def test_classification_examples_and_last_token(tok) -> None:
    labels = ["negative", "positive"]
    records = [
        {"text": "a good film", "label": "positive"},
        {"text": "the dog sat on a bad log and ran under the mat quickly", "label": "negative"},
        {"text": "good", "label": "positive"},
    ]
    ds = ClassificationDataset(records, tok, max_len=8, labels=labels)
    assert [int(ds[i]["label"]) for i in range(3)] == [1, 0, 1]
    assert ds[1]["input_ids"].tolist() == tok.encode(records[1]["text"]).ids[:8]  # truncation keeps the start
    batch = collate_right_pad(pad_id(tok))([ds[i] for i in range(3)])
    lengths = [len(ds[i]["input_ids"]) for i in range(3)]
    assert batch["label"].tolist() == [1, 0, 1]
    assert batch["attention_mask"].sum(1).tolist() == lengths
    B, T = batch["input_ids"].shape
    hidden = torch.arange(T, dtype=torch.float).view(1, T, 1).expand(B, T, 3)  # hidden value = its position
    assert last_token(hidden, batch["attention_mask"])[:, 0].tolist() == [n - 1 for n in lengths]
    left = batch["attention_mask"].flip(1)  # left padding works too
    assert last_token(hidden, left)[:, 0].tolist() == [T - 1] * B
    with pytest.raises(ValueError, match="record 0: label 'neutral'"):
        ClassificationDataset([{"text": "meh", "label": "neutral"}], tok, max_len=8, labels=labels)


def order(loader) -> list[int]:
    return [i for batch in loader for i in batch.tolist()]


def test_resumable_loader_order_and_position() -> None:
    data = list(range(10))
    loader = resumable_loader(data, batch_size=3, seed=7, shuffle=True)
    assert len(loader) == 4
    epoch0 = order(loader)
    assert sorted(epoch0) == data and epoch0 != data
    assert order(loader) == epoch0  # the order is a function of (seed, epoch): same epoch, same order
    loader.sampler.set_epoch(1)
    epoch1 = order(loader)
    assert sorted(epoch1) == data and epoch1 != epoch0
    assert order(resumable_loader(data, batch_size=3, seed=7, shuffle=False)) == data

    # stop after two batches of epoch 1, save, resume in a new loader
    loader.sampler.set_epoch(1)
    it = iter(loader)
    seen = [next(it).tolist() for _ in range(2)]
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["batches_done"] == 2
    resumed = resumable_loader(data, batch_size=3, seed=7, shuffle=True)
    resumed.load_state_dict(state)
    assert len(resumed) == 4  # Lightning counts an epoch's batches from len(): still the whole epoch
    assert sum(seen, []) + order(resumed) == epoch1
    assert resumed.state_dict()["batches_done"] == 4
    assert len(order(resumed)) == 10  # the skip applies to one pass only

    # a finished epoch resumes at the start of the next one
    finished = resumable_loader(data, batch_size=3, seed=7, shuffle=True)
    finished.load_state_dict(resumed.state_dict())
    finished.sampler.set_epoch(2)
    assert len(order(finished)) == 10

    with pytest.raises(ValueError, match="batches of 3"):
        resumable_loader(data, batch_size=4, seed=7).load_state_dict(state)


def test_unigram_baseline_loss() -> None:
    train = torch.tensor([0, 0, 1])  # add-one counts over a vocab of 3: 3, 2, 1 of 6
    val = torch.tensor([0, 2])
    expected = -(math.log(3 / 6) + math.log(1 / 6)) / 2
    assert unigram_baseline_loss(train, val, vocab_size=3) == pytest.approx(expected)
    empty_train = torch.tensor([], dtype=torch.long)
    assert unigram_baseline_loss(empty_train, val, vocab_size=50) == pytest.approx(math.log(50))  # uniform
