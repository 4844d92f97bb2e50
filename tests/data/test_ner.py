"""The People's Daily NER reader (alignops.data.ner): parsing, compounds, BIO tags, sentences and splits."""

from __future__ import annotations

import pytest

from alignops.data import ner, sources

SNIPPET = (
    "[中国/ns  国际/n  广播/vn  电台/n]nt  记者/n  江/nr  泽民/nr  李鹏/nr  在/p  北京/ns  [上海/ns  市/n]ns  。/w"
)


def test_compound_and_names_become_entities() -> None:
    words = ner.parse_line(SNIPPET)
    text = "".join(w.text for w in words)
    assert text == "中国国际广播电台记者江泽民李鹏在北京上海市。"
    tags = ner.bio_tags(words)
    assert len(tags) == len(text)
    # the nested ns inside [...]nt does not count: the whole compound is one ORG
    assert ner.entities(tags) == [("ORG", 0, 8), ("PER", 10, 13), ("PER", 13, 15), ("LOC", 16, 18), ("LOC", 18, 21)]
    assert tags[:3] == ["B-ORG", "I-ORG", "I-ORG"] and tags[8:11] == ["O", "O", "B-PER"]
    assert ner.bio_problems(text, tags) == []


def test_surname_joins_only_its_given_name() -> None:
    words = ner.parse_line("江/nr  泽民/nr  李/nr  鹏/nr  克林顿/nr  叶利钦/nr  和/c  欧阳/nr  修/nr")
    assert [(t, s, e) for t, s, e in ner.entities(ner.bio_tags(words))] == [
        ("PER", 0, 3),
        ("PER", 3, 5),
        ("PER", 5, 8),
        ("PER", 8, 11),
        ("PER", 12, 15),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("中国/ns  政府", "is not word/TAG"),
        ("[中国/ns  政府/n", "never closed"),
        ("中国/ns  政府/n]nt", "closes no compound"),
        ("[中国/ns  [北京/ns  政府/n]nt", "inside another"),
    ],
)
def test_malformed_lines_are_named(line: str, message: str) -> None:
    with pytest.raises(sources.SourceError, match=message) as info:
        ner.parse_line(line, "199801.txt", 7)
    assert "199801.txt:7" in str(info.value)


def test_bio_problems_name_each_defect() -> None:
    assert ner.bio_problems("甲乙", ["O", "I-PER"]) == ["I-PER at character 1 follows O"]
    assert ner.bio_problems("甲乙", ["B-PER", "I-LOC"]) == ["I-LOC at character 1 follows B-PER"]
    assert ner.bio_problems("甲乙", ["B-MISC", "O"]) == ["tags outside the label set: ['B-MISC']"]
    assert ner.bio_problems("甲乙丙", ["O"]) == ["1 tags for 3 characters"]
    assert ner.bio_problems("甲乙", ["B-PER", "I-PER"]) == []


def test_sentences_cut_at_ends_and_split_with_their_corpus_passage() -> None:
    clauses = [f"北京/ns  {chr(0x4E00 + i)}/n  ，/w" for i in range(150)]  # 150 distinct 4-character clauses
    line = "中国/ns  很/d  大/a  。/w  " + "  ".join(clauses) + "  。/w"
    paragraphs = [ner.parse_line(line), ner.parse_line(SNIPPET)]
    seen: list[str] = []

    def split(key: str) -> str:
        seen.append(key)
        return "train" if key.startswith("中国很大") else "test"

    sets = ner.build_ner(paragraphs, chunk_chars=1500, split=split, min_chars=3)
    texts = [r["text"] for r in sets["train"]]
    assert texts[0] == "中国很大。"
    # the 601-character sentence was cut after commas into pieces of at most MAX_SENTENCE_CHARS; its final "。"
    # alone is shorter than min_chars
    assert [len(t) for t in texts[1:]] == [200, 200, 200] and texts[2].startswith("北京")
    assert [r["text"] for r in sets["test"]] == ["中国国际广播电台记者江泽民李鹏在北京上海市。"]
    # a sentence's split key is the corpus passage (the whole first paragraph), not the sentence
    assert seen[0].startswith("中国很大。北京一，") and len(seen[0]) > 400
    assert ner.entity_counts(sets["test"]) == {"PER": 2, "LOC": 2, "ORG": 1}
