"""The classic baselines a neural model must beat, measured on the same held-out data as the model itself.

    lm = NGramLM.fit(train_ids, order=3, vocab_size=V)         # interpolated Kneser-Ney on the tokenizer's ids
    loss, n = lm.loss(scored_blocks(test_ids, block_size, max_tokens))   # nats/token on the GPT's very blocks
    bow = bag_of_words(train_records, test_records, labels)     # TF-IDF + logistic regression -> LabelMetrics
    metrics = language_model_baselines(...) | classification_baseline(...)   # what evaluate logs (eval/*)

N-gram models: interpolated Kneser-Ney (Chen & Goodman 1998) with one absolute discount per model. The highest
order counts n-grams; each lower order counts continuations (how many distinct tokens precede an (n-1)-gram), down
to a uniform distribution over the vocabulary, so no token of the vocabulary gets probability 0. They score the same
next-token pairs as the GPT's eval/ppl (alignops.evaluation.scoring.scored_blocks): inside each block a token's
context is at most the n - 1 tokens before it in that block, as the GPT sees only its block; the first targets of a
block get the shorter context's (lower-order) probability.

Bag of words: character 1-3-grams (within word boundaries) weighted by TF-IDF and a logistic regression, because
the classification set mixes English and unsegmented Chinese; scored by the same classification_metrics as the
fine-tuned and generative models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DISCOUNT = 0.75  # Kneser-Ney's absolute discount; 0.75 is the usual fixed choice for bigram and trigram counts
NGRAM_ORDERS = (2, 3)
_ORDER_NAME = {2: "bigram", 3: "trigram"}


@dataclass(frozen=True)
class _Level:
    """The counts of one order k: k-gram keys and counts, and per (k-1)-gram context its total and distinct types."""

    keys: np.ndarray  # sorted unique k-gram keys
    counts: np.ndarray
    context_keys: np.ndarray  # sorted unique (k-1)-gram keys
    context_totals: np.ndarray
    context_types: np.ndarray


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[keys == q] for every q in query, 0 where q is absent (keys sorted)."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.float64)
    at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[at] == query, values[at], 0).astype(np.float64)


def _gram_keys(tokens: np.ndarray, k: int, vocab_size: int) -> np.ndarray:
    """One int64 key per k-gram of the stream: ((w1 * V) + w2) * V + ... (V**3 fits int64 for any real vocab)."""
    keys = np.zeros(len(tokens) - k + 1, dtype=np.int64)
    for i in range(k):
        keys = keys * vocab_size + tokens[i : len(tokens) - k + 1 + i]
    return keys


def _level(keys: np.ndarray, counts: np.ndarray, vocab_size: int) -> _Level:
    contexts = keys // vocab_size
    context_keys, inverse = np.unique(contexts, return_inverse=True)
    totals = np.bincount(inverse, weights=counts)
    types = np.bincount(inverse)
    return _Level(keys, counts.astype(np.float64), context_keys, totals, types.astype(np.float64))


class NGramLM:
    """An interpolated Kneser-Ney n-gram language model over token ids."""

    def __init__(self, levels: list[_Level], order: int, vocab_size: int, discount: float) -> None:
        self.levels, self.order, self.vocab_size, self.discount = levels, order, vocab_size, discount

    @classmethod
    def fit(cls, tokens: Sequence[int] | np.ndarray, order: int, vocab_size: int, discount: float = DISCOUNT):
        """Count the stream's n-grams (order n >= 1) and the lower orders' continuation counts."""
        stream = np.asarray(tokens, dtype=np.int64)
        if order < 1 or not 0 < discount < 1:
            raise ValueError(f"need order >= 1 and 0 < discount < 1, got order={order}, discount={discount}")
        if len(stream) < order:
            raise ValueError(f"{len(stream)} training tokens cannot hold one {order}-gram")
        if stream.min() < 0 or stream.max() >= vocab_size:
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got {stream.min()}..{stream.max()}")
        keys, counts = np.unique(_gram_keys(stream, order, vocab_size), return_counts=True)
        levels = [_level(keys, counts, vocab_size)]
        for k in range(order - 1, 0, -1):
            # continuation count of a k-gram: distinct tokens seen before it, from the unique (k+1)-grams
            keys, counts = np.unique(levels[-1].keys % vocab_size**k, return_counts=True)
            levels.append(_level(keys, counts, vocab_size))
        return cls(levels[::-1], order, vocab_size, discount)  # levels[k - 1] holds order k

    def probabilities(self, contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """P(target | context) for rows of contexts (N, c), c < order (the last c tokens are used), targets (N,)."""
        contexts = np.asarray(contexts, dtype=np.int64).reshape(len(targets), -1)
        targets = np.asarray(targets, dtype=np.int64)
        width = contexts.shape[1]
        if width >= self.order:
            raise ValueError(f"a {self.order}-gram model takes at most {self.order - 1} context tokens, got {width}")
        p = np.full(len(targets), 1.0 / self.vocab_size)  # order 0: uniform over the vocabulary
        for k in range(1, width + 2):
            level = self.levels[k - 1]
            context_key = np.zeros(len(targets), dtype=np.int64)
            for i in range(width - (k - 1), width):
                context_key = context_key * self.vocab_size + contexts[:, i]
            gram_key = context_key * self.vocab_size + targets
            count = _lookup(level.keys, level.counts, gram_key)
            total = _lookup(level.context_keys, level.context_totals, context_key)
            types = _lookup(level.context_keys, level.context_types, context_key)
            seen = total > 0  # an unseen context passes the lower order's probability through unchanged
            safe = np.where(seen, total, 1.0)
            p = np.where(seen, np.maximum(count - self.discount, 0) / safe + self.discount * types / safe * p, p)
        return p

    def loss(self, blocks: Any) -> tuple[float, int]:
        """(mean negative log-likelihood in nats, number of targets) over blocks (K, T): tokens 1..T-1 of each
        block predicted from at most order - 1 tokens before them in the same block, as lm_loss scores the GPT."""
        rows = np.asarray(blocks, dtype=np.int64)
        total, n = 0.0, 0
        for t in range(1, rows.shape[1]):
            width = min(t, self.order - 1)
            p = self.probabilities(rows[:, t - width : t], rows[:, t])
            total -= float(np.log(p).sum())
            n += len(p)
        return total / n, n


def language_model_baselines(train_ids: Any, blocks: Any, vocab_size: int, model_ppl: float) -> dict[str, float]:
    """eval/ppl_bigram, eval/ppl_trigram on the blocks the GPT was scored on, and eval/ppl_margin: the trigram's
    perplexity minus the model's (positive: the model beats the trigram)."""
    train = np.asarray(train_ids, dtype=np.int64)
    metrics: dict[str, float] = {}
    for order in NGRAM_ORDERS:
        loss, _ = NGramLM.fit(train, order, vocab_size).loss(blocks)
        metrics[f"eval/ppl_{_ORDER_NAME[order]}"] = math.exp(loss)
    metrics["eval/ppl_margin"] = metrics["eval/ppl_trigram"] - model_ppl
    return metrics


def bag_of_words(
    train_texts: Sequence[str], train_labels: Sequence[str], test_texts: Sequence[str], labels: Sequence[str],
    seed: int = 0,
) -> list[str]:  # fmt: skip
    """Predicted labels of test_texts by TF-IDF (character 1-3-grams) + logistic regression fit on the train set."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    missing = sorted(set(labels) - set(train_labels))
    if missing:
        raise ValueError(f"the bag-of-words baseline has no training example of {missing}: it needs every label")
    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=2, sublinear_tf=True),
        LogisticRegression(max_iter=1000, random_state=seed),
    )
    model.fit(list(train_texts), list(train_labels))
    return [str(p) for p in model.predict(list(test_texts))]


BOW_FIGURES = ("accuracy", "precision", "recall", "f1")


def classification_baseline(
    train_records: Sequence[dict], test_records: Sequence[dict], labels: Sequence[str], model_f1: float, seed: int = 0
) -> dict[str, float]:
    """eval/{accuracy,precision,recall,f1}_bow of the bag-of-words baseline on the model's own test examples, and
    eval/f1_margin: the model's macro F1 minus the baseline's."""
    from alignops.evaluation.metrics import classification_metrics

    predicted = bag_of_words([r["text"] for r in train_records], [r["label"] for r in train_records],
                             [r["text"] for r in test_records], labels, seed)  # fmt: skip
    scored = classification_metrics([r["label"] for r in test_records], predicted, labels)
    metrics = {f"eval/{name}_bow": getattr(scored, name) for name in BOW_FIGURES}
    return metrics | {"eval/f1_margin": model_f1 - scored.f1}


def baseline_metrics(cfg: Any, model: Any, metrics: dict[str, float]) -> dict[str, float]:
    """What the evaluate stage logs beside a model's figures (cfg: PipelineConfig, model: a LoadedModel): the n-gram
    perplexities and their margin when the model has an eval/ppl, the bag-of-words figures and the F1 margin when it
    has an eval/f1, each baseline fit on the train split and scored on the model's own held-out examples."""
    from alignops.data import datasets
    from alignops.evaluation.classification import LABELS
    from alignops.evaluation.scoring import corpus_ids, lm_block, scored_blocks
    from alignops.stages.training import spread

    out: dict[str, float] = {}
    if "eval/ppl" in metrics:
        texts = {s: [r["text"] for r in datasets.load_split(cfg.data.data_dir, "corpus", s)] for s in ("train", "test")}
        test_ids = corpus_ids(model.tokenizer, texts["test"])
        blocks = scored_blocks(test_ids, lm_block(model.gpt), cfg.evaluate.max_lm_tokens)
        train_ids = corpus_ids(model.tokenizer, texts["train"]).numpy()
        vocab = len(model.tokenizer) if hasattr(model.tokenizer, "__len__") else model.tokenizer.get_vocab_size()
        out |= language_model_baselines(train_ids, blocks.numpy(), vocab, metrics["eval/ppl"])
    if "eval/f1" in metrics:
        train = datasets.load_split(cfg.data.data_dir, "classification", "train")
        # the examples evaluation.classification scored the model on
        test = spread(datasets.load_split(cfg.data.data_dir, "classification", "test"),
                      cfg.evaluate.max_classification_examples)  # fmt: skip
        labels = list(model.meta.labels or LABELS)
        out |= classification_baseline(train, test, labels, metrics["eval/f1"], cfg.seed)
    return out
