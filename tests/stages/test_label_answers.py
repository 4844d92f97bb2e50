"""steps.label_model: a pretrained model's answers to an evaluation's prompts queued beside the policy's, so a
labeler of a tiny from-scratch policy always has a legible answer to rank (a tiny random Llama stands in here for
SmolLM2, which the demo fetches)."""

from __future__ import annotations

from pathlib import Path

from alignops.base_models import import_base
from alignops.feedback.store import Store
from alignops.jsonl import write_jsonl
from alignops.stages.feedback import queue_answers, queue_samples
from tests.support.hf_models import save_folder, tiny_model, tiny_tokenizer


def test_answers_are_queued_beside_the_policys(home: Path, tmp_path: Path) -> None:
    base = import_base(save_folder(tiny_model("llama"), tmp_path / "tiny", tiny_tokenizer()), name="labeler-aid")
    prompts = ["Write a happy sentence.", "Describe rain.", "Say hello."]
    samples = write_jsonl(
        [{"sample_id": f"s{i}", "prompt": p, "model_uri": "models:/alignops-policy/1", "completion": f"policy {i}"}
         for i, p in enumerate(prompts)],
        tmp_path / "samples.jsonl",
    )  # fmt: skip
    assert queue_samples(samples) == 3
    added = queue_answers(base.uri, samples)
    assert 0 < added <= 3  # a random model may answer a prompt with nothing visible: such answers are left out
    assert queue_answers(base.uri, samples) == 0  # idempotent per model version and prompt

    store = Store()
    try:
        labeler = store.add_annotator("ana", "secret-password")
        task = store.next_task(labeler.id, k=4, seed=0)
        models = set(store.response_models([r.id for r in task.responses]).values())
    finally:
        store.close()
    assert models == {"models:/alignops-policy/1", base.uri}  # one task holds both models' answers
