"""Pure text-preparation steps of the data build: clean, detect language, chunk, deduplicate, split.

Each function is deterministic (same input bytes, same output bytes on any machine with Python 3.11), which is
what makes `alignops data build` reproduce the md5 committed in data.dvc.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# Full-width ASCII letters and digits become half-width; full-width punctuation (，。！？：；（）) is
# deliberately kept: it is correct Chinese typography, and NFKC would flatten it to ASCII.
_FULLWIDTH_ALNUM = {
    cp: cp - 0xFEE0 for lo, hi in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)) for cp in range(lo, hi + 1)
}
# Only inline formatting tags are markup here; other <...> may be code in an instruction's answer.
_MARKUP = re.compile(r"</?(?:br|p|i|b|em|strong|u|span|font)(?:\s[^<>]{0,200})?\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace but newline, incl. U+3000 ideographic space
_BLANK_LINES = re.compile(r"\n{3,}")


@functools.cache
def _invisible() -> re.Pattern[str]:
    """Control and format characters (zero-width spaces, BOMs, bidi marks), except newline and tab.

    Built as ranges: a class listing the ~140k private-use code points one by one makes matching crawl."""
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") and ch not in "\n\t":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return re.compile("[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges) + "]")


def invisible_character(text: str) -> str | None:
    """The first control or format character that clean_text would remove from `text`, else None."""
    found = _invisible().search(text)
    return found.group() if found else None


def clean_text(text: str) -> str:
    """Normalise one text: entities and inline markup out, NFC, half-width alphanumerics, no control
    characters, single spaces, no trailing spaces, at most one blank line in a row."""
    text = html.unescape(text)
    text = _MARKUP.sub(" ", text)
    text = unicodedata.normalize("NFC", text).translate(_FULLWIDTH_ALNUM)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _invisible().sub("", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def detect_lang(text: str) -> str | None:
    """'zh' when Han characters make up a good share of the letters, 'en' for Latin script, else None.

    Crude on purpose: the sources' languages are known; this only catches the odd record in another script
    (Japanese kana, Korean, Cyrillic), which the contracts do not allow.
    """
    han = latin = other = 0
    for ch in text:
        if _is_han(ch):
            han += 1
        elif ch.isascii() and ch.isalpha():
            latin += 1
        elif ch.isalpha():
            other += 1
    letters = han + latin + other
    if letters == 0:
        return None
    if han / letters >= 0.3 and other / letters < 0.05:
        return "zh"
    if latin / letters >= 0.9:
        return "en"
    return None


_SENTENCE_END = re.compile(r"(?<=[。！？!?.；;])")


def chunk(text: str, max_chars: int) -> list[str]:
    """Cut a long passage into pieces of at most max_chars, at paragraph ends, else sentence ends."""
    pieces: list[str] = []
    for para in text.split("\n"):
        para = para.strip()
        if len(para) <= max_chars:
            parts = [para] if para else []
        else:
            parts, current = [], ""
            for sentence in _SENTENCE_END.split(para):
                while len(sentence) > max_chars:  # one sentence longer than a chunk: hard cut
                    parts.append(sentence[:max_chars])
                    sentence = sentence[max_chars:]
                if len(current) + len(sentence) > max_chars:
                    parts.append(current)
                    current = ""
                current += sentence
            parts.append(current)
        for part in parts:
            if pieces and len(pieces[-1]) + 1 + len(part) <= max_chars:
                pieces[-1] += "\n" + part
            else:
                pieces.append(part)
    return [p for p in (p.strip() for p in pieces) if p]


def content_hash(text: str, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}\x00{text}".encode()).hexdigest()


def mixed_out(key: str, source: str, weights: dict[str, float]) -> bool:
    """data.mix: whether a train record of `source` falls outside the share its weight keeps (by content hash, so
    the same records stay in every rebuild). A weight is looked up by the exact source, then by its family (the
    part before the first "/" or ":", e.g. "vader" for "vader/tweets"); a source not named keeps all."""
    family = source.replace(":", "/").split("/", 1)[0]
    weight = weights.get(source, weights.get(family, 1.0))
    return weight < 1.0 and int(content_hash(key, "mix")[:8], 16) / 2**32 >= weight


def split_of(key: str, salt: str, val_fraction: float, test_fraction: float) -> str:
    """Assign a split by content hash, not by position: the same key lands in the same split in every set
    and every rebuild, whatever the order or the other records."""
    u = int(content_hash(key, salt)[:8], 16) / 2**32
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _exact_key(text: str) -> str:
    # Case, spacing and punctuation differences do not make a text new.
    return hashlib.sha1("".join(ch for ch in text.casefold() if ch.isalnum()).encode()).hexdigest()


def _shingles(text: str, size: int) -> list[bytes]:
    text = " ".join(text.casefold().split())
    if len(text) <= size:
        return [text.encode()]
    return [text[i : i + size].encode() for i in range(len(text) - size + 1)]


@dataclass(frozen=True)
class DedupStats:
    kept: int
    exact_removed: int
    near_removed: int


def deduplicate(
    items: Iterable[T],
    text_of: Callable[[T], str],
    threshold: float = 0.8,
    num_perm: int = 64,
    shingle_chars: int = 5,
) -> tuple[list[T], DedupStats]:
    """Keep the first of every group of exact or near-duplicate texts (MinHash LSH over character
    shingles, candidates confirmed by their estimated Jaccard similarity). Order is preserved.

    Run before splitting: with one text of each near-duplicate group left, no split can hold a copy of
    another split's text.
    """
    from datasketch import MinHash, MinHashLSH

    seen: set[str] = set()
    unique: list[T] = []
    total = 0
    for item in items:
        total += 1
        key = _exact_key(text_of(item))
        if key not in seen:
            seen.add(key)
            unique.append(item)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes: dict[str, MinHash] = {}
    kept: list[T] = []
    for index, item in enumerate(unique):
        mh = MinHash(num_perm=num_perm, seed=1)
        mh.update_batch(_shingles(text_of(item), shingle_chars))
        if any(hashes[c].jaccard(mh) >= threshold for c in lsh.query(mh)):
            continue
        name = str(index)
        lsh.insert(name, mh)
        hashes[name] = mh
        kept.append(item)
    return kept, DedupStats(kept=len(kept), exact_removed=total - len(unique), near_removed=len(unique) - len(kept))
