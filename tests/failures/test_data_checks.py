"""Planted data defects the checks used to let through: an eval prompt inside rankings/train (the leak check
compared eval prompts with sft/train only) and an escaped \\u0000 (cleaning strips control characters, the
checks did not look). Real Great Expectations over a small dataset of three sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alignops.data.validation import CONTRACTS, DataValidationError, leaks_of, require_valid, validate_dataset

SETS = ["sft", "rankings", "eval_prompts"]
EVAL_PROMPT = "Write a haiku about data."


def records() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = {}
    for split in ("train", "val", "test"):
        data[f"sft/{split}"] = [
            {"prompt": f"{split}: What is RLHF?", "response": "Feedback.", "source": "hh", "derived": False}
        ]
        data[f"rankings/{split}"] = [
            {"prompt": f"{split}: Say hi", "responses": [f"{split}: {r}" for r in ("Hi!", "Hello.", "Go away.")],
             "ranking": [1, 0, 2], "annotator": "human-1", "source": "hh", "derived": False, "agreement": 0.75},
        ]  # fmt: skip
    data["eval_prompts/test"] = [{"prompt": EVAL_PROMPT, "source": "eval", "lang": "en", "task": "answer"}]
    return data


def write(root: Path, data: dict[str, list[Any]], raw: dict[str, str] | None = None) -> Path:
    for name, rows in data.items():
        path = root / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + (raw or {}).get(name, "")
        path.write_text(text, encoding="utf-8")
    return root


def test_clean_data_passes(tmp_path: Path) -> None:
    report = validate_dataset(write(tmp_path, records()), sets=SETS)
    assert report.success, report.format()


def test_eval_prompt_in_rankings_train_is_a_leak(tmp_path: Path) -> None:
    data = records()
    data["rankings/train"].append({**data["rankings/train"][0], "prompt": EVAL_PROMPT})  # line 2
    with pytest.raises(DataValidationError) as caught:
        require_valid(write(tmp_path, data), sets=SETS)
    failures = [(f.dataset, f.column) for f in caught.value.report.failures]
    assert failures == [("eval_prompts/test", "prompt_in_rankings_train")], caught.value.report.format()
    assert "eval_prompts/test.jsonl:1" in str(caught.value)
    assert "prompt does not occur in rankings/train" in str(caught.value)


def test_escaped_nul_and_other_controls_are_refused(tmp_path: Path) -> None:
    raw = {
        "sft/train": '{"prompt": "a\\u0000b", "response": "ok", "source": "hh", "derived": false}\n',  # line 2
        "rankings/val": json.dumps({**records()["rankings/val"][0], "prompt": "zero\u200bwidth"})
        + "\n",  # line 2: a format character
    }
    with pytest.raises(DataValidationError) as caught:
        require_valid(write(tmp_path, records(), raw), sets=SETS)
    failed = {(f.dataset, f.column, f.expectation): f for f in caught.value.report.failures}
    nul = failed[("sft/train", "prompt", "expect_strings_without_control_characters")]
    assert nul.sample_rows[0]["row"] == 2 and "U+0000" in nul.sample_rows[0]["value"]
    zw = failed[("rankings/val", "prompt", "expect_strings_without_control_characters")]
    assert zw.sample_rows[0]["row"] == 2 and "U+200B" in zw.sample_rows[0]["value"]
    assert "sft/train.jsonl:2" in str(caught.value)


def test_every_prompt_set_is_checked_against_every_train_split() -> None:
    """Generic over CONTRACTS: a set added there (a rollout prompt set, say) is covered without new code."""
    with_prompts = sorted(n for n, c in CONTRACTS.items() if "train" in c.splits and "prompt" in c.columns)
    checked = sorted(leak.reference.split("/")[0] for leak in leaks_of("eval_prompts") if leak.column == "prompt")
    assert checked == with_prompts and {"sft", "rankings"} <= set(checked)
