"""The rollout prompt set: built from the fixture sources, split by its texts' content hash, and held out from
every train split of every set, which the validation suites check set against set (real GX, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignops.config import load_config
from alignops.data import prepare
from alignops.data.contracts import CONTRACTS, leaks_of
from alignops.data.datasets import build_datasets, load_split
from alignops.data.rollout import PROMPT, rollout_prefix, rollout_prompts
from alignops.data.validation import DataValidationError, require_valid, validate_dataset
from tests.conftest import TINY, write_source_cache

HELD_OUT = ("val", "test")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rollout")
    overrides = [f"data.data_dir={root / 'data'}", *(o for o in TINY if o.startswith("data."))]
    build_datasets(load_config("tiny", overrides).data, write_source_cache(root / "sources"))
    return root / "data"


def train_values(data_dir: Path, column: str) -> set[str]:
    """Every value of `column` in every train split, list elements included."""
    values: set[str] = set()
    for name, contract in CONTRACTS.items():
        if "train" in contract.splits and column in contract.columns:
            for record in load_split(data_dir, name, "train"):
                cell = record[column]
                values.update(cell if isinstance(cell, list) else [cell])
    return values


def test_the_fixture_build_has_a_rollout_set_in_three_splits(data_dir: Path) -> None:
    rollout = {s: load_split(data_dir, "rollout_prompts", s) for s in ("train", "val", "test")}
    assert all(len(records) >= 20 for records in rollout.values()), {s: len(r) for s, r in rollout.items()}
    records = [r for split in rollout.values() for r in split]
    assert {r["lang"] for r in records} == {"en", "zh"}
    assert all(r["prompt"] == PROMPT[r["lang"]].format(text=r["prefix"]) for r in records)
    sheet = json.loads((data_dir / "datasheet.json").read_text(encoding="utf-8"))
    assert sheet["counts"]["rollout_prompts"] == {s: len(r) for s, r in rollout.items()}


def test_a_held_out_rollout_prompt_is_in_no_train_split(data_dir: Path) -> None:
    trained_prompts = train_values(data_dir, "prompt")
    trained_texts = train_values(data_dir, "text") | train_values(data_dir, "responses")
    trained_prefixes = {rollout_prefix(t, prepare.detect_lang(t) or "en") for t in trained_texts}
    for split in HELD_OUT:
        records = load_split(data_dir, "rollout_prompts", split)
        assert not {r["prompt"] for r in records} & trained_prompts
        # nor does any text trained on (classification, corpus, a ranking's response) start with its prefix
        assert not {r["prefix"] for r in records} & trained_prefixes
    assert validate_dataset(data_dir, sets=["rollout_prompts", "eval_prompts", "sft", "rankings"]).success


def test_a_prefix_shared_across_splits_is_dropped() -> None:
    texts = [
        ("I loved the film and its music so much", "vadersentiment/movieReviewSnippets", "en", "key-a"),
        ("I loved the film and hated the long ending", "vadersentiment/movieReviewSnippets", "en", "key-b"),
        ("I loved the film and its music a lot", "vadersentiment/movieReviewSnippets", "en", "key-c"),
        ("The soup was cold and bland and salty", "vadersentiment/tweets", "en", "key-d"),
        ("too short", "vadersentiment/tweets", "en", "key-e"),  # nothing left to continue: no prompt
    ]
    split = {"key-a": "train", "key-b": "test", "key-c": "train", "key-d": "test", "key-e": "val"}.get
    out, dropped = rollout_prompts(texts, split)
    assert dropped == 1  # "I loved the film and" is the start of a train text and of a test text
    assert {s: [r["prefix"] for r in records] for s, records in out.items()} == {"test": ["The soup was cold and"]}


def test_every_set_is_checked_against_every_train_split_with_its_held_out_columns() -> None:
    for name, contract in CONTRACTS.items():
        held_out = tuple(s for s in contract.splits if s != "train")
        for column in contract.held_out:
            expected = {
                f"{other}/train" for other, c in CONTRACTS.items() if "train" in c.splits and column in c.columns
            }
            assert {leak.reference for leak in leaks_of(name) if leak.column == column} == expected
            assert all(leak.splits == held_out for leak in leaks_of(name))
    # the rollout set is checked against the others, and the others against it
    assert "rollout_prompts/train" in {leak.reference for leak in leaks_of("eval_prompts")}
    assert "rollout_prompts/train" in {leak.reference for leak in leaks_of("sft")}
    assert "sft/train" in {leak.reference for leak in leaks_of("rollout_prompts")}


def test_a_planted_leak_into_a_train_split_is_refused(data_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(data_dir, tmp_path / "data"))
    held_out = load_split(copy, "rollout_prompts", "test")[0]
    record = {"prompt": held_out["prompt"], "response": "and then it ended.", "source": "hh", "derived": False}
    with (copy / "sft" / "train.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    with pytest.raises(DataValidationError) as caught:
        require_valid(copy, sets=["rollout_prompts"])
    failures = {(f.dataset, f.column) for f in caught.value.report.failures}
    assert failures == {("rollout_prompts/test", "prompt_in_sft_train")}, caught.value.report.format()
