"""Preference pairs for the reward model: rankings expanded into (chosen, rejected) pairs, tokenized and batched.

    pairs = expand_rankings(load_split(data_dir, "rankings", "train"), weight_by="agreement")
    train = PairDataset(pairs, tok, max_len=256)
    loader = resumable_loader(train, 16, seed=0, shuffle=True, collate_fn=collate_pairs(pad_id(tok)))
    length_baseline_accuracy(val_pairs)    # what "the longer response wins" scores: the length-bias bar
    single_rater_agreement(val_records)    # how often one human agrees with the ranking: the bar from above

Pairs are never stored (the data contract keeps rankings): expand_rankings is the one place they are derived, with
datasets.ranking_pairs, so K ranked responses give every ordered pair of the ranking and tied ones give none.

A batch (collate_pairs) holds chosen_ids and rejected_ids, both (B, T) right-padded to one common T so the model
can run them as one (2B, T) batch, their masks chosen_mask and rejected_mask (1 real token, 0 padding), and
weight (B,).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from alignops.chat import chat_tokenizer
from alignops.data.datasets import ranking_pairs
from alignops.data.loaders import Example, chat_example, collate_right_pad


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str  # the response ranked higher
    rejected: str
    source: str  # the ranking's source, for per-source metrics
    weight: float  # the ranking's agreement (unknown: the set's mean), or 1.0: DPO's weight, the reward model's
    # soft Bradley-Terry target (the probability a person prefers chosen)
    ranking: int = 0  # index of its ranking among the records expanded: the pairs of one ranking share it


def _record_pairs(record: dict[str, Any]) -> list[tuple[int, int]]:
    """The (better, worse) index pairs of one ranking record; none when the labeler skipped it."""
    return [] if record.get("skip") else ranking_pairs(record["ranking"])


def expand_rankings(
    records: Iterable[dict[str, Any]], weight_by: Literal["agreement"] | None = "agreement"
) -> list[Pair]:
    """Every ordered pair of every ranking, in record order, then ranking order.

    weight_by="agreement": each pair weighs its record's agreement (how often a single human agrees with the
    order); where that is unknown (null), the mean agreement of the records that have one (never the most weight
    a pair can get: an unknown order is not a certain one), 1.0 when none has one; None: every pair weighs 1.0."""
    if weight_by not in ("agreement", None):
        raise ValueError(f'weight_by must be "agreement" or None, got {weight_by!r}')
    records = list(records)
    known = [float(r["agreement"]) for r in records if r.get("agreement") is not None and _record_pairs(r)]
    unknown = sum(known) / len(known) if known else 1.0
    pairs = []
    for index, record in enumerate(records):
        agreement = record.get("agreement")
        weight = (unknown if agreement is None else float(agreement)) if weight_by == "agreement" else 1.0
        responses = record["responses"]
        for better, worse in _record_pairs(record):
            pairs.append(Pair(record["prompt"], responses[better], responses[worse], record["source"], weight, index))
    return pairs


def with_empty_negatives(pairs: Sequence[Pair]) -> list[Pair]:
    """pairs plus, per ranking, its lowest-ranked response preferred to an empty reply, with certainty (weight 1).
    Rankings never show an empty reply, so a reward model has no reason to score one low, and PPO learns to stop
    when it scores high: even the worst answer people ranked is better than no answer. A ranking whose responses
    all tie has no lowest one and gets none."""
    out, chosen, rejected = list(pairs), {}, {}
    for pair in pairs:
        chosen.setdefault(pair.ranking, set()).add(pair.chosen)
        rejected.setdefault(pair.ranking, []).append(pair)
    for ranking, lost in rejected.items():
        worst = next((p for p in lost if p.rejected not in chosen[ranking]), None)
        if worst is not None:
            out.append(Pair(worst.prompt, worst.rejected, "", worst.source, 1.0, ranking))
    return out


class PairDataset(Dataset):
    """Pairs in the base's chat template as token ids, each side an SFT example (loaders.chat_example).

    Prompt and response are tokenized apart, as in loaders.SFTDataset, so the prompt's tokens are exactly what the
    policy is given and the reward model scores the same ids that PPO will hand it. A side longer than max_len is
    cut as SFTDataset cuts it; `truncated` counts the pairs with a side cut. tokenizer: the base's, or its
    alignops.chat.ChatTokenizer."""

    def __init__(self, pairs: Sequence[Pair], tokenizer, max_len: int) -> None:
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {max_len}")
        tok = chat_tokenizer(tokenizer)
        self.examples: list[Example] = []
        self.truncated = 0
        for pair in pairs:
            chosen_ids, chosen_labels, cut_c = chat_example(tok, pair.prompt, pair.chosen, max_len)
            rejected_ids, rejected_labels, cut_r = chat_example(tok, pair.prompt, pair.rejected, max_len)
            self.truncated += cut_c or cut_r
            self.examples.append(
                dict(
                    chosen_ids=torch.tensor(chosen_ids),
                    chosen_labels=torch.tensor(chosen_labels),
                    rejected_ids=torch.tensor(rejected_ids),
                    rejected_labels=torch.tensor(rejected_labels),
                    weight=torch.tensor(pair.weight),
                )
            )

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


class RankingBatches(Dataset):
    """A PairDataset regrouped so that one item is every pair of one ranking (InstructGPT: the K*(K-1)/2 pairs of a
    ranking are highly correlated, so they go into one batch together rather than into different epochs' batches,
    where they overfit). A loader's batch_size then counts rankings; collate_rankings flattens them."""

    def __init__(self, pairs: Sequence[Pair], dataset: PairDataset) -> None:
        if len(pairs) != len(dataset):
            raise ValueError(f"{len(pairs)} pairs but {len(dataset)} tokenized examples: build both from one list")
        groups: dict[int, list[int]] = {}
        for i, pair in enumerate(pairs):
            groups.setdefault(pair.ranking, []).append(i)
        self.groups = list(groups.values())
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> list[Example]:
        return [self.dataset[j] for j in self.groups[i]]


def collate_rankings(pad_token_id: int) -> Callable[[list[list[Example]]], Example]:
    """Collate RankingBatches items: every pair of every ranking in the batch, as collate_pairs."""
    collate = collate_pairs(pad_token_id)
    return lambda rankings: collate([pair for ranking in rankings for pair in ranking])


def collate_pairs(pad_token_id: int) -> Callable[[list[Example]], Example]:
    """Collate PairDataset items: chosen and rejected right-padded to one common length, with their masks and
    labels (-100 on prompt and padding)."""
    pad = collate_right_pad(pad_token_id)

    def collate(examples: list[Example]) -> Example:
        n = len(examples)
        rows = [{"input_ids": e[f"{side}_ids"], "labels": e[f"{side}_labels"]} for side in ("chosen", "rejected")
                for e in examples]  # fmt: skip
        both = pad(rows)  # (2n, T): chosen rows first
        ids, mask, labels = both["input_ids"], both["attention_mask"], both["labels"]
        return dict(
            chosen_ids=ids[:n],
            chosen_mask=mask[:n],
            chosen_labels=labels[:n],
            rejected_ids=ids[n:],
            rejected_mask=mask[n:],
            rejected_labels=labels[n:],
            weight=torch.stack([e["weight"] for e in examples]).float(),
        )

    return collate


def length_baseline_accuracy(pairs: Sequence[Pair]) -> float:
    """Accuracy of "the longer response (in characters) wins", equal lengths counting half.

    Compare with the reward model's (unweighted) accuracy on the same pairs: a model near this number may have
    learned length rather than preference."""
    if not pairs:
        raise ValueError("length_baseline_accuracy needs at least one pair")
    score = sum(
        1.0 if len(p.chosen) > len(p.rejected) else 0.5 if len(p.chosen) == len(p.rejected) else 0.0 for p in pairs
    )
    return score / len(pairs)


def single_rater_agreement(records: Iterable[dict[str, Any]]) -> float | None:
    """The mean agreement of the records that have one, each weighing its number of pairs: how often a single
    human agrees with a pair's order, the accuracy a reward model cannot be expected to beat on those records.
    None when no record with pairs has an agreement."""
    total = count = 0.0
    for record in records:
        if record.get("agreement") is None:
            continue
        n = len(_record_pairs(record))
        total += record["agreement"] * n
        count += n
    return total / count if count else None
