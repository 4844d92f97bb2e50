"""The rollout prompt set: prompts for RL rollouts (PPO, GRPO, RLOO), Ziegler et al.'s sentiment continuations on
this project's data: an instruction to continue the first words of a real text (a VADER text, a Chinese review).
The chat template wraps the prompt at rollout; `prefix` keeps the first words alone for experiments that want them.

    records, dropped = rollout_prompts(((text, source, lang, key) for ...), split)   # split: key -> "train" | ...
    rollout_prefix("I loved the film and its music so much", "en")                    # "I loved the film and"

A prompt's split is its text's split (the text's content hash decides, as for every other use of that text), so a
held-out prompt's text is in no train split either; datasets.build_datasets writes the result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from alignops.data import prepare

PROMPT = {"en": "Continue this text:\n\n{text}", "zh": "续写下面这段文字：\n\n{text}"}
PREFIX = {"en": 5, "zh": 8}  # the prefix: this many words (en) or characters (zh)
REST = {"en": 3, "zh": 8}  # at least this much of the text left after the prefix to continue into


def rollout_prefix(text: str, lang: str) -> str | None:
    """The first words (en) or characters (zh) of a text, None when too little of it would be left to continue."""
    if lang == "zh":
        return text[: PREFIX["zh"]] if len(text) >= PREFIX["zh"] + REST["zh"] else None
    words = text.split()
    return " ".join(words[: PREFIX["en"]]) if len(words) >= PREFIX["en"] + REST["en"] else None


def rollout_prompts(
    texts: Iterable[tuple[str, str, str, str]], split: Callable[[str], str]
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """One prompt per distinct prefix of the (text, source, lang, key) given, in the split of its text's key; a
    prefix that texts of different splits share is dropped (it would be held out and trained on at once). Returns
    the records per split, in content-hash order, and the number of prefixes dropped so."""
    found: dict[str, tuple[dict[str, Any], set[str]]] = {}
    for text, source, lang, key in texts:
        prefix = rollout_prefix(text, lang)
        if prefix is None:
            continue
        prompt = PROMPT[lang].format(text=prefix)
        record = {"prompt": prompt, "prefix": prefix, "source": source, "lang": lang}
        found.setdefault(prompt, (record, set()))[1].add(split(key))
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for prompt in sorted(found, key=prepare.content_hash):
        record, splits = found[prompt]
        if len(splits) == 1:
            out[splits.pop()].append(record)
    return out, sum(len(splits) > 1 for _, splits in found.values())
