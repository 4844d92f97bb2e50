"""The pipeline and feedback flows under a real (test) Prefect server, on the made-up source cache.

One project folder for the module: the first run trains everything; the later runs are judged by what they
reuse. Each fixture below is one pipeline run on top of the previous ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignops import cache, tracking
from alignops.config import load_config
from flows.pipeline import STAGES, pipeline, steps_between
from flows.tasks import is_transient
from tests.conftest import project_checkout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, prefect_harness):
    """A git + DVC checkout as the working directory, with its own ALIGNOPS_HOME (and so MLflow store)."""
    # the promotion gate as configured: tiny models' responses are noise to the judges, far from evidence
    with project_checkout(tmp_path_factory.mktemp("pipeline")) as overrides:
        yield overrides


# The tiny preset's recipe: the own GPT as the base (no fetched or imported one), with its few-shot and NER steps.
RECIPE = [s for s in STAGES if s not in ("base", "label")]


@pytest.fixture(scope="module")
def first(project):
    return pipeline("tiny", project)


@pytest.fixture(scope="module")
def second(first, project):
    return pipeline("tiny", project)


@pytest.fixture(scope="module")
def changed_sft(second, project):
    return pipeline("tiny", [*project, "sft.lr=0.002"])


def _children(parent_run_id: str) -> list:
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_run_id]


def test_first_run_trains_evaluates_and_promotes_with_nested_runs(first) -> None:
    assert first["ran"] == RECIPE and first["cached"] == []
    assert first["data_version"].endswith(".dir")
    assert (first["base"], first["sft"], first["reward"], first["policy"]) == (
        "models:/alignops-base/1", "models:/alignops-sft/1", "models:/alignops-reward/1", "models:/alignops-policy/1"
    )  # fmt: skip
    children = _children(first["parent_run_id"])
    assert sorted(r.info.run_name for r in children) == sorted(
        [
            "data-build",
            "data-validate",
            "tokenizer",
            "pretrain",
            "fewshot",
            "ner",
            "sft",
            "reward",
            "ppo",
            "evaluate",
            "promote",
        ]
    )
    assert all(r.info.status == "FINISHED" for r in children)
    # each stage was handed the exact version made upstream in this run
    assert first["ner"] == "models:/alignops-ner/1"
    assert tracking.model_version_tags(first["ner"])["alignops.parent_model"] == first["base"]
    fewshot_run = next(r for r in children if r.info.run_name == "fewshot")
    assert (
        fewshot_run.info.run_id == first["fewshot_run_id"] and fewshot_run.data.tags["alignops.model"] == first["base"]
    )
    assert "fewshot/accuracy_k0" in fewshot_run.data.metrics
    policy = tracking.model_version_tags(first["policy"])
    assert policy["alignops.parent_model"] == first["sft"]
    assert policy["alignops.reward_model"] == first["reward"]
    # each stage left a summary table for the Prefect UI
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pretrain-summary"])))
    assert tables and "val/loss" in str(tables[0].data)
    # the evaluation's responses (the policy's and its baseline's) wait for labelers in the preference store
    from alignops.feedback.store import Store

    store = Store()
    assert {first["policy"], first["sft"]} <= set(store.counts()["by_model"])
    assert store.has_rewards()  # with the reward model's scores: the least certain comparisons come first
    store.close()
    # the gate decides on evidence: a tiny policy judged on a handful of prompts has too few decisive comparisons
    # with its SFT parent, so it stays challenger, and the decision says what is missing
    assert first["promoted"] is False and first["champion"] is None
    assert tracking.alias_uri("alignops-policy", "challenger") == first["policy"]
    assert tracking.alias_uri("alignops-policy", "champion") is None
    decision = tracking.model_version_tags(first["policy"])["alignops.promotion"]
    assert decision.startswith("failed: eval/win_rate_judge") and "decisive comparisons" in decision
    assert "need at least 30 (promotion.min_decisive_comparisons)" in decision


def test_an_unchanged_rerun_reuses_every_stage(first, second) -> None:
    # everything is reused but the gate (never cached): the policy is still a challenger, and is refused again
    assert second["cached"] == RECIPE[:-1] and second["ran"] == ["promote"]
    for key in ("base", "sft", "reward", "policy"):
        assert second[key] == first[key]
    assert [r.info.run_name for r in _children(second["parent_run_id"])] == ["promote"]
    assert second["promoted"] is False


def test_a_changed_sft_config_reruns_sft_and_downstream_only(first, changed_sft) -> None:
    assert changed_sft["cached"] == ["data", "tokenizer", "pretrain", "fewshot", "ner"]
    assert changed_sft["ran"] == ["sft", "reward", "ppo", "evaluate", "promote"]
    assert changed_sft["base"] == first["base"]
    assert (changed_sft["sft"], changed_sft["reward"], changed_sft["policy"]) == (
        "models:/alignops-sft/2", "models:/alignops-reward/2", "models:/alignops-policy/2"
    )  # fmt: skip
    assert tracking.model_version_tags(changed_sft["sft"])["alignops.parent_model"] == first["base"]


def test_cache_key_follows_the_inputs(changed_sft, project) -> None:
    cfg = load_config("tiny", project)
    other = load_config("tiny", [*project, "sft.lr=0.002"])
    assert cache.stage_key("sft", cfg) == cache.stage_key("sft", load_config("tiny", project))
    assert cache.stage_key("sft", cfg) != cache.stage_key("sft", other)
    assert cache.stage_key("pretrain", cfg) == cache.stage_key("pretrain", other)  # upstream untouched
    parts = cache.key_parts("sft", cfg)
    assert parts["data"] == changed_sft["data_version"] and len(parts["code"]) == 16
    # a new parent version changes the key of everything downstream (the flow writes it into the section)
    with_parent = cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"base_model": "models:/alignops-base/9"})})
    assert cache.stage_key("sft", with_parent) != cache.stage_key("sft", cfg)


def _label(n_prompts: int) -> int:
    """Two labelers rank every open task, through the store as the dashboard does: the evaluations' queued
    responses and a few of our own for the two policy versions. Returns the rankings submitted."""
    from alignops.feedback.store import Store

    store, submitted = Store(), 0
    try:
        for version, style in (("1", "calm"), ("2", "bright")):
            samples = [
                {"sample_id": f"p{i}", "prompt": f"Write about item {i}.", "completion": f"A {style} item {i}."}
                for i in range(n_prompts)
            ]
            store.import_samples(f"models:/alignops-policy/{version}", samples)
        for name in ("ana", "ben"):
            labeler = store.add_annotator(name, "a long enough password")
            while (task := store.next_task(labeler.id, k=2)) is not None:
                best_first = [[r.id] for r in sorted(task.responses, key=lambda r: "bright" not in r.text)]
                store.submit_ranking(labeler.id, task.prompt_id, best_first, client_token=f"{name}-{task.prompt_id}")
                submitted += 1
    finally:
        store.close()
    return submitted


def test_feedback_with_too_few_new_labels_does_nothing(changed_sft, project) -> None:
    from flows.feedback import feedback

    result = feedback("tiny", [*project, "feedback.min_new_labels=4"])
    assert result["retrained"] is False and result["new_labels"] == 0
    assert "nothing to do" in result["message"]
    assert tracking.pin_uri("models:/alignops-reward/latest") == changed_sft["reward"]


def test_feedback_with_enough_labels_trains_a_new_reward_model(changed_sft, project) -> None:
    from alignops.data import versioning
    from alignops.stages.feedback import watermark
    from flows.feedback import feedback

    # no tiny policy passed the gate (too little evidence); an operator deploys the newest one by hand, and the
    # loop starts from the SFT model behind that champion
    assert tracking.alias_uri("alignops-policy", "champion") is None
    tracking.set_alias(changed_sft["policy"], "champion")
    champion = tracking.alias_uri("alignops-policy", "champion")
    submitted = _label(n_prompts=3)
    assert submitted >= 6  # 2 labelers x (3 prompts of ours + the evaluations' eval prompts)
    result = feedback("tiny", [*project, "feedback.min_new_labels=4"])
    assert result["retrained"] is True and result["new_labels"] == submitted
    assert result["data_version"] == versioning.data_version() != changed_sft["data_version"]
    assert watermark(Path("data"))["count"] == submitted
    assert result["ran"][:3] == ["reward", "ppo", "evaluate"]
    assert result["reward"] == "models:/alignops-reward/3"
    reward_tags = tracking.model_version_tags(result["reward"])
    assert reward_tags["alignops.data_version"] == result["data_version"]
    # the loop starts from the SFT model behind the deployed (champion) policy
    assert result["sft"] == tracking.model_version_tags(champion)["alignops.parent_model"] == changed_sft["sft"]
    assert reward_tags["alignops.parent_model"] == result["sft"]
    again = feedback("tiny", [*project, "feedback.min_new_labels=4"])  # the labels are in the data now
    assert again["retrained"] is False and again["new_labels"] == 0


def test_an_imported_base_takes_the_place_of_tokenizer_and_pretrain(changed_sft, project, tmp_path) -> None:
    from tests.support.hf_models import save_folder, tiny_model

    folder = save_folder(tiny_model("llama"), tmp_path / "tiny-llama")
    imported = [*project, "steps.base=import", f"steps.base_source={folder}"]
    result = pipeline("tiny", imported, to="base")
    assert result["cached"] == ["data"] and result["ran"] == ["base"]
    assert result["base"] == "models:/tiny-llama-base/1"
    again = pipeline("tiny", imported, to="base")  # the same folder is the same version: nothing registered
    assert again["cached"] == ["data", "base"] and again["base"] == result["base"]
    with pytest.raises(ValueError, match="not in this config's recipe"):
        pipeline.fn("tiny", imported, start="pretrain")


def test_a_transient_failure_is_retried_and_the_flow_completes(changed_sft, project, monkeypatch) -> None:
    from alignops.stages import tokenizer

    real, calls = tokenizer.run, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("tracking server unreachable (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(tokenizer, "run", flaky)
    result = pipeline("tiny", [*project, "tokenizer.min_frequency=3"], to="tokenizer")
    assert len(calls) == 2 and result["ran"] == ["tokenizer"]
    assert result["cached"] == ["data"]  # the data with the feedback labels counts as built: no rebuild


def test_a_validation_failure_stops_the_flow_and_keeps_the_champion(changed_sft, project) -> None:
    from alignops.data.validation import DataValidationError

    champion = tracking.alias_uri("alignops-policy", "champion")
    with pytest.raises(DataValidationError, match="corpus") as failure:
        pipeline("tiny", [*project, "validation.max_text_chars=5"])  # every corpus text is now too long
    assert "stopped at stage 'data'" in "\n".join(failure.value.__notes__)
    assert tracking.alias_uri("alignops-policy", "champion") == champion


def test_the_rl_method_is_a_choice_of_the_ppo_step(changed_sft, project) -> None:
    grpo = [*project, "ppo.method=grpo", "ppo.group_size=2"]
    newest_reward = tracking.pin_uri("models:/alignops-reward/latest")  # the feedback loop's, by now
    result = pipeline("tiny", grpo, start="ppo", to="ppo")  # started after sft and reward: their newest versions
    assert result["ran"] == ["ppo"] and (result["sft"], result["reward"]) == (changed_sft["sft"], newest_reward)
    tags = tracking.model_version_tags(result["policy"])
    assert tags["alignops.method"] == "grpo"
    assert (tags["alignops.parent_model"], tags["alignops.reward_model"]) == (changed_sft["sft"], newest_reward)


def test_transient_errors_are_retried_and_bad_input_is_not() -> None:
    from alignops.config import ConfigError
    from alignops.data.sources import SourceError

    assert is_transient(ConnectionError("tracking server unreachable"))
    wrapped = RuntimeError("mlflow call failed")
    wrapped.__cause__ = TimeoutError()
    assert is_transient(wrapped)
    assert not is_transient(ConfigError("bad preset"))
    assert not is_transient(SourceError(Path("x.json"), 3, "not JSON", "fix it"))


def test_bad_stage_names_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown stage"):
        pipeline.fn("tiny", [], to="nope")
    with pytest.raises(ValueError, match="comes after"):
        pipeline.fn("tiny", [], start="ppo", to="sft")
    with pytest.raises(ValueError, match="steps.base=pretrain"):  # the own base has no fetched or imported step
        pipeline.fn("tiny", [], start="base")


def test_the_recipe_follows_the_steps_section() -> None:
    def names(overrides: list[str]) -> list[str]:
        return [step.name for step in steps_between(load_config("tiny", overrides), "data", "promote")]

    assert names(["steps.label_model=null"]) == RECIPE
    assert names([]) == [*RECIPE[:-1], "label", "promote"]  # the tiny preset's demo queues SmolLM2's answers
    assert names(["steps.base=fetch", "steps.base_source=smollm2-135m-instruct", "steps.ner=false"]) == [
        "data", "base", "fewshot", "sft", "reward", "ppo", "evaluate", "label", "promote"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="steps.base_source"):
        load_config("tiny", ["steps.base=import"])


def test_flows_do_not_import_torch() -> None:
    code = "import sys, flows.pipeline, flows.feedback, flows.schedule; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "False"
