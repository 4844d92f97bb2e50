"""Decoding never cuts a character: generation may stop after a byte-level token that holds only the first bytes
of a UTF-8 character; alignops.data.tokenizer.decode drops that partial tail instead of showing U+FFFD."""

from __future__ import annotations

from pathlib import Path

from alignops.data.tokenizer import REPLACEMENT, decode, decode_batch, load_tokenizer, train_tokenizer

TEXT = "spring 春天 comes"


def test_a_trailing_partial_character_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    # a vocabulary too small to learn the Chinese characters: each is split into its 3 UTF-8 bytes
    info = train_tokenizer(["spring comes, spring goes"] * 4, vocab_size=280, min_frequency=2, out_dir=tmp_path)
    tokenizer = load_tokenizer(info.path)
    ids = tokenizer.encode(TEXT).ids
    assert decode(tokenizer, ids) == TEXT  # whole text: unchanged
    spring = tokenizer.encode("spring ").ids
    start = len(spring)
    assert ids[:start] == spring and len(ids) - start >= 6  # 春 and 天: 3 byte tokens each
    for cut in (1, 2):  # stop one or two bytes into 春
        raw = tokenizer.decode(ids[: start + cut])
        assert raw.endswith(REPLACEMENT)  # what the plain decoder shows
        assert decode(tokenizer, ids[: start + cut]) == "spring "
    assert decode(tokenizer, ids[: start + 3]) == "spring 春"  # a whole character stays
    assert decode(tokenizer, ids[: start + 4]) == "spring 春"
    assert decode_batch(tokenizer, [ids[: start + 5], ids]) == ["spring 春", TEXT]
    assert decode(tokenizer, []) == ""
