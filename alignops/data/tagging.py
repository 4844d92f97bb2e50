"""Character tags <-> token labels, for any Hugging Face `tokenizers` tokenizer (the own byte-level BPE, MiniLM's
WordPiece): what a per-token classification head trains on and how its predictions become character tags again.

    enc = encode(tokenizer, text, max_len)             # ids, and for each character its first token
    labels = token_labels(enc, tags)                   # a token is labeled with its first character's tag
    tags = character_tags(enc, predicted_tag_per_token, len(text))

A token spanning several characters (a BPE merge of 中国) is trained on the tag of its first character; its other
characters inherit the prediction (B-X becomes I-X inside it). A character split over several byte tokens is
labeled on its first one; the rest are ignored (-100). Characters cut off by max_len are predicted O.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignops.data.ner import OUTSIDE, TAGS

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    # per token: (first character, end) it covers, or None for special tokens ([CLS], [SEP]) and padding
    spans: list[tuple[int, int] | None]


def encode(tokenizer, text: str, max_len: int) -> Encoded:
    """The token ids of `text` (with the tokenizer's own special tokens), cut to max_len."""
    enc = tokenizer.encode(text)
    spans = [
        None if special or start >= end else (start, end)
        for (start, end), special in zip(enc.offsets, enc.special_tokens_mask, strict=True)
    ]
    return Encoded(list(enc.ids[:max_len]), spans[:max_len])


def _first_tokens(enc: Encoded) -> dict[int, int]:
    """character -> the first token covering it."""
    owner: dict[int, int] = {}
    for i, span in enumerate(enc.spans):
        if span is not None:
            for c in range(*span):
                owner.setdefault(c, i)
    return owner


def token_labels(enc: Encoded, tags: list[str]) -> list[int]:
    """Label ids per token: the tag of the token's first character where the token is that character's first
    token, else IGNORE_INDEX."""
    labels = [IGNORE_INDEX] * len(enc.ids)
    for c, i in _first_tokens(enc).items():
        if enc.spans[i][0] == c:
            labels[i] = TAGS.index(tags[c])
    return labels


def character_tags(enc: Encoded, token_tags: list[str], n_chars: int) -> list[str]:
    """Per-character tags from per-token predictions (see the module docstring)."""
    owner = _first_tokens(enc)
    out = []
    for c in range(n_chars):
        i = owner.get(c)
        if i is None:
            out.append(OUTSIDE)
            continue
        tag = token_tags[i]
        out.append(tag if enc.spans[i][0] == c or tag == OUTSIDE else f"I-{tag[2:]}")
    return out


class TaggingDataset:
    """A torch map-style dataset of {input_ids, labels} for records {text, tags}."""

    def __init__(self, records: list[dict], tokenizer, max_len: int) -> None:
        import torch

        self.examples = []
        for r in records:
            enc = encode(tokenizer, r["text"], max_len)
            self.examples.append(
                {
                    "input_ids": torch.tensor(enc.ids, dtype=torch.long),
                    "labels": torch.tensor(token_labels(enc, r["tags"]), dtype=torch.long),
                }
            )

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]
