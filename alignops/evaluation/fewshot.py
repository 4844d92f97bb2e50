"""In-context learning: zero-, one- and few-shot classification of the held-out sentiment set by a causal LM, with
no fine-tuning (the GPT-2 / GPT-3 recipe). The stage around it is alignops.stages.fewshot (`alignops fewshot`).

    demos = draw_demonstrations(queries, train, max(shots), seed=1337)   # per query, from train, same language
    prompt = fewshot_prompt(query, demos[i][:k])                         # k solved examples, then the question
    table = [score_shot(k, gold, answers) for k ...]                      # accuracy and F1 with 95% intervals

On a base with its own chat template (a Hugging Face base), the same turns are a conversation in that template
(fewshot_messages, rendered by the base's ChatTokenizer): the template the model was tuned on, its EOS between turns.

A demonstration is the question the SFT data asks (datasets.SENTIMENT_PROMPT) as a chat turn, followed by its
answer (datasets.SENTIMENT_ANSWER) and a blank line; the query is the same turn left open for the model to
answer. The answer is parsed like the generative evaluation parses it (metrics.parse_label); unparseable is
wrong. Each query draws its demonstrations once (max k of them, from the train split, in its language, seeded)
and k-shot uses the first k: the k's differ only in how many examples the model sees, not in which.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from alignops.chat import ChatTokenizer, ProjectTokenizer
from alignops.data.datasets import SENTIMENT_ANSWER, SENTIMENT_PROMPT
from alignops.data.tokenizer import chat_template

BOOTSTRAP_SAMPLES = 1000  # resamples of the macro-F1 percentile interval


def question(record: dict) -> str:
    return SENTIMENT_PROMPT[record["lang"]].format(text=record["text"])


def fewshot_prompt(query: dict, demonstrations: Sequence[dict]) -> str:
    """The whole text the model continues: each demonstration answered, then the query's open chat turn."""
    solved = "".join(
        chat_template(question(d)) + SENTIMENT_ANSWER[d["lang"]][d["label"]] + "\n\n" for d in demonstrations
    )
    return solved + chat_template(question(query))


def fewshot_messages(query: dict, demonstrations: Sequence[dict]) -> list[dict[str, str]]:
    """The same turns as a conversation: each demonstration a user question and its assistant answer, then the query."""
    turns = []
    for d in demonstrations:
        turns += [{"role": "user", "content": question(d)},
                  {"role": "assistant", "content": SENTIMENT_ANSWER[d["lang"]][d["label"]]}]  # fmt: skip
    return [*turns, {"role": "user", "content": question(query)}]


def fewshot_text(tok: ChatTokenizer, query: dict, demonstrations: Sequence[dict]) -> str:
    """The prompt for the model behind tok: fewshot_prompt on the project's tokenizer, the conversation in the
    tokenizer's own chat template otherwise (open for the assistant's answer)."""
    if isinstance(tok, ProjectTokenizer):
        return fewshot_prompt(query, demonstrations)
    return tok.render(fewshot_messages(query, demonstrations), add_generation_prompt=True)


def draw_demonstrations(queries: Sequence[dict], train: Sequence[dict], k: int, seed: int) -> list[list[dict]]:
    """k train examples per query in the query's language, drawn without replacement by one seeded generator."""
    if k == 0:
        return [[] for _ in queries]
    by_lang: dict[str, list[dict]] = {}
    for r in train:
        by_lang.setdefault(r["lang"], []).append(r)
    rng = random.Random(seed)
    drawn = []
    for q in queries:
        pool = by_lang.get(q["lang"], [])
        if len(pool) < k:
            raise ValueError(
                f"{k}-shot needs {k} train examples in language {q['lang']!r}, the train split has {len(pool)}: "
                "lower the shots (fewshot.shots) or rebuild the data."
            )
        drawn.append(rng.sample(pool, k))
    return drawn


@dataclass(frozen=True)
class ShotScore:
    """One row of the k-shot table: accuracy and macro F1 over n held-out examples, with 95% intervals (Wilson for
    accuracy, a seeded bootstrap percentile interval for F1)."""

    k: int
    n: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    f1: float
    f1_low: float
    f1_high: float
    unparseable_rate: float
    truncated_rate: float  # prompts longer than the context whose start (the first demonstrations) was cut

    def as_metrics(self, prefix: str = "fewshot/") -> dict[str, float]:
        names = ("accuracy", "accuracy_low", "accuracy_high", "f1", "f1_low", "f1_high", "unparseable_rate",
                 "truncated_rate")  # fmt: skip
        return {f"{prefix}{name}_k{self.k}": float(getattr(self, name)) for name in names} | {
            f"{prefix}examples_k{self.k}": float(self.n)
        }


def score_shot(
    k: int, gold: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str], truncated: int, seed: int = 0
) -> ShotScore:
    """The k-shot row from gold labels and parsed answers (None: unparseable)."""
    from alignops.evaluation.metrics import classification_metrics, wilson_interval

    scored = classification_metrics(gold, predicted, labels)
    correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
    low, high = wilson_interval(correct, len(gold))
    rng = random.Random(seed)
    f1s = []
    for _ in range(BOOTSTRAP_SAMPLES):
        picks = [rng.randrange(len(gold)) for _ in gold]
        f1s.append(classification_metrics([gold[i] for i in picks], [predicted[i] for i in picks], labels).f1)
    f1s.sort()
    return ShotScore(
        k=k, n=len(gold), accuracy=scored.accuracy, accuracy_low=low, accuracy_high=high, f1=scored.f1,
        f1_low=f1s[int(0.025 * len(f1s))], f1_high=f1s[int(0.975 * len(f1s)) - 1],
        unparseable_rate=scored.unparseable_rate, truncated_rate=truncated / len(gold),
    )  # fmt: skip
