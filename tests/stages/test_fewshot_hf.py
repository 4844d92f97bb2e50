"""`alignops fewshot` on a Hugging Face base (a tiny random Llama imported like `alignops model import`): the
prompts are conversations in the base's own chat template, answered through the same Generator as the own GPT,
and the k-shot table is logged."""

from __future__ import annotations

import pytest

from alignops import tracking
from alignops.base_models import import_base
from alignops.config import load_config
from alignops.inference import Generator
from alignops.stages import data, fewshot
from tests.conftest import project_checkout
from tests.support.hf_models import save_folder, tiny_model


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory):
    """A git + DVC checkout with its own ALIGNOPS_HOME and the data built; no model of the project's trained."""
    with project_checkout(tmp_path_factory.mktemp("fewshot-hf")) as overrides:
        cfg = load_config("tiny", overrides)
        data.build(cfg)
        yield cfg


def test_fewshot_table_of_a_hugging_face_base(checkout, tmp_path, monkeypatch) -> None:
    base = import_base(save_folder(tiny_model("llama"), tmp_path / "tiny-llama"))
    shots = checkout.fewshot.model_copy(update={"shots": [0, 1], "max_examples": 6})
    cfg = checkout.model_copy(update={"fewshot": shots})
    prompts: list[str] = []
    complete = Generator.complete
    monkeypatch.setattr(Generator, "complete", lambda self, p, *a, **k: prompts.extend(p) or complete(self, p, *a, **k))

    r = fewshot.run(cfg, model_uri=base.uri)

    assert r.model_uri == base.uri and [row.k for row in r.table] == [0, 1]
    assert len(prompts) == 12
    # ChatML (the tiny base's template): the query is a user turn left open for the assistant
    assert all(p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n") for p in prompts)
    zero, one = prompts[:6], prompts[6:]
    assert all(p.count("<|im_start|>user") == 1 for p in zero) and all(p.count("<|im_start|>user") == 2 for p in one)
    logged = tracking.run_metrics(r.run_id)
    for row in r.table:
        assert row.n == 6 and logged[f"fewshot/accuracy_k{row.k}"] == pytest.approx(row.accuracy)
    # the tiny base has 64 positions: one demonstration makes every prompt longer than the context
    assert r.table[1].truncated_rate == 1.0 and r.table[0].truncated_rate <= 1.0
