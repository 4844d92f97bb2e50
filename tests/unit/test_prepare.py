import pytest

from alignops.data.datasets import pair_agreement, rank_with_ties, ranking_pairs
from alignops.data.prepare import chunk, clean_text, deduplicate, detect_lang, split_of


def test_clean_keeps_chinese_punctuation_and_fixes_width() -> None:
    assert clean_text("你好，世界！（ＡＢＣ１２３）") == "你好，世界！（ABC123）"


def test_clean_removes_control_and_zero_width_characters() -> None:
    assert clean_text("a\u200bb\x07c\ufeffd") == "abcd"


def test_clean_strips_inline_markup_and_entities_but_not_code() -> None:
    assert clean_text("good<br />movie &amp; fun") == "good movie & fun"
    assert clean_text("use <div> here") == "use <div> here"


def test_clean_normalises_whitespace() -> None:
    assert clean_text("  a \t b\u3000\u3000c  \r\n\n\n\n d ") == "a b c\n\nd"


def test_clean_is_idempotent() -> None:
    text = "  Ｈｉ，<b>there</b>\u200b\n\n\n你好　世界 "
    assert clean_text(clean_text(text)) == clean_text(text)


@pytest.mark.parametrize(
    "text, lang",
    [
        ("今天天气很好。", "zh"),
        ("The film was great.", "en"),
        ("今日はいい天気ですね", None),
        ("1234 !!", None),
        ("Привет мир", None),
        ("用 Python 写一个函数", "zh"),
    ],
)
def test_detect_lang(text: str, lang: str | None) -> None:
    assert detect_lang(text) == lang


def test_chunk_respects_the_limit_and_loses_nothing() -> None:
    text = "第一句。第二句很长很长。\n" + "x" * 25 + "\n短。"
    pieces = chunk(text, 10)
    assert all(len(p) <= 10 for p in pieces)
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")


def test_exact_and_near_duplicates_are_removed_keeping_the_first() -> None:
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    items = [base, base.upper() + "!", base.replace("today", "tonight"), "something else entirely, unrelated"]
    kept, stats = deduplicate(items, lambda t: t, threshold=0.7)
    assert kept == [base, "something else entirely, unrelated"]
    assert (stats.exact_removed, stats.near_removed, stats.kept) == (1, 1, 2)


def test_deduplicate_is_deterministic() -> None:
    items = [f"sentence number {i % 7} about topic {i % 5}" for i in range(40)]
    assert deduplicate(items, str)[0] == deduplicate(list(items), str)[0]


def test_split_by_content_is_stable_and_proportional() -> None:
    keys = [f"text {i}" for i in range(20000)]
    splits = [split_of(k, "salt", 0.05, 0.05) for k in keys]
    assert splits == [split_of(k, "salt", 0.05, 0.05) for k in keys]
    assert 0.04 < splits.count("test") / len(keys) < 0.06
    assert 0.04 < splits.count("val") / len(keys) < 0.06
    assert split_of("text 1", "other salt", 0.05, 0.05) in {"train", "val", "test"}


def test_rank_with_ties_groups_close_scores() -> None:
    assert rank_with_ties([0.1, 2.0, 1.9, -1.0], margin=0.5) == [[1, 2], 0, 3]
    assert rank_with_ties([3.0, 1.0], margin=0.5) == [0, 1]


def test_ranking_expands_into_every_ordered_pair_except_ties() -> None:
    assert ranking_pairs([[1, 2], 0, 3]) == [(1, 0), (1, 3), (2, 0), (2, 3), (0, 3)]
    assert ranking_pairs([2, 0, 1]) == [(2, 0), (2, 1), (0, 1)]  # K=3: 3 pairs
    assert ranking_pairs([[0, 1]]) == []


def test_pair_agreement_from_raw_ratings() -> None:
    # better: {2, 2}; worse: {1, 2}: 2>1 twice, 2==2 twice (half each) -> (2 + 1) / 4
    assert pair_agreement((2, 2), (1, 2)) == pytest.approx(0.75)
    assert pair_agreement((4,), (-4,)) == 1.0
