"""The rows an evaluation writes for the dashboard and the feedback loop: samples.jsonl (one per eval prompt, the
model's response beside the baseline's, with every score) and predictions.jsonl (one per classified example).

    sample_id("Write a tweet.")      # the prompt's stable id: the same in every model's samples
"""

from __future__ import annotations

import hashlib
from typing import Any


def sample_id(prompt: str) -> str:
    """A prompt's stable id: the same prompt has the same id in every model's samples."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def sample_rows(
    records: list[dict[str, Any]], uri: str, mine, kls: list[float] | None, baseline_uri: str | None, theirs
) -> list[dict[str, Any]]:
    """samples.jsonl: one row per eval prompt record; mine/theirs are alignops.evaluation.alignment.Answers
    (theirs None without a baseline), kls the per-response KL to the reference (None without one)."""
    rows = []
    for i, r in enumerate(records):
        row = {
            "sample_id": sample_id(r["prompt"]),
            "prompt": r["prompt"],
            "lang": r.get("lang"),
            "source": r.get("source"),
            "task": r["task"],
            "completion": mine.responses.texts[i],
            "model_uri": uri,
            "reward": mine.reward[i] if mine.reward is not None else None,
            "judge": mine.judge[i],
            "afinn": mine.afinn[i],
            "length": mine.responses.lengths[i],
            "eos": mine.responses.eos[i],
            "kl": kls[i] if kls is not None else None,
        }
        if theirs is not None:
            row |= {
                "baseline_uri": baseline_uri,
                "baseline_completion": theirs.responses.texts[i],
                "baseline_reward": theirs.reward[i] if theirs.reward is not None else None,
                "baseline_judge": theirs.judge[i],
                "baseline_afinn": theirs.afinn[i],
            }
        rows.append(row)
    return rows
