"""The sentiment experiment's flow at tiny scale (CI runs the experiment only so): the arms train, each is
measured against the SFT policy on held-out prefixes, the report lands in MLflow, and the pipeline's own
registered models are left alone."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch

from alignops import tracking
from alignops.config import ConfigError, PipelineConfig, load_config
from alignops.data import datasets
from alignops.errors import ModelError
from alignops.evaluation.metrics import WinRate
from alignops.evaluation.models import ModelCache
from alignops.precision import BF16_MIXED, FP32
from alignops.stages import pretrain, reward, sentiment, sft, simulated_labels
from flows.experiment import sentiment_experiment
from tests.support.precision import forward_precisions

TINY_EXPERIMENT = [
    "reward.min_accuracy=0.0", "reward.bias_checks=false",
    "ppo.iterations=2", "ppo.rollout_batch_size=4", "ppo.minibatch_size=2", "ppo.ppo_epochs=1",
    "ppo.checkpoint_every_n_iterations=1", "ppo.eval_samples=4", "ppo.group_size=2",
    "experiment.prompts_per_source=2", "experiment.max_new_tokens=6", "experiment.batch_size=4",
    "experiment.min_reward_agreement=0",  # a random tiny reward model agrees with no judge
]  # fmt: skip


def test_a_reward_model_that_cannot_tell_stops_the_experiment(built: PipelineConfig) -> None:
    """Agreement with the judge on SFT continuation pairs whose 95% lower bound is not above the floor stops the
    experiment before any RL, with what was measured and what to do; a clear agreement, or floor 0, passes."""
    coin = WinRate(52, 48, 3, 0.52, 0.42, 0.62, 0.42, 0.62)
    with pytest.raises(ModelError, match=r"0.52 of the time \[0.42, 0.62\] over 100 decisive pairs.*labelers rank"):
        sentiment.require_agreement(built, coin, "models:/alignops-sentiment-reward/1")
    with pytest.raises(ModelError, match=r"- of the time \[0.00, 1.00\] over 0 decisive pairs"):  # no evidence
        sentiment.require_agreement(built, WinRate(0, 0, 0, None, 0.0, 1.0, 0.0, 1.0), "models:/r/1")
    sentiment.require_agreement(built, WinRate(80, 20, 0, 0.8, 0.71, 0.87, 0.7, 0.88), "models:/r/1")
    off = built.model_copy(update={"experiment": built.experiment.model_copy(update={"min_reward_agreement": 0})})
    sentiment.require_agreement(off, coin, "models:/r/1")


def test_quick_runs_with_experiment_quick_over_the_section() -> None:
    cfg = load_config("smollm2")
    full, quick = cfg.experiment, sentiment.quick_config(cfg).experiment
    assert (quick.simulated_labels, quick.quick) == (full.quick["simulated_labels"], {})
    assert full.simulated_labels > quick.simulated_labels
    # a dict field is merged: the quick fit keeps the full run's lr and validation, with its own max_steps
    assert quick.reward == full.reward | {"max_steps": full.quick["reward"]["max_steps"]} != full.reward
    assert (quick.seeds, quick.ppo, quick.iterations) == (full.seeds, full.ppo, full.iterations)  # the rest: as full
    typo = cfg.model_copy(update={"experiment": full.model_copy(update={"quick": {"simulated_label": 10}})})
    with pytest.raises(ConfigError, match="(?s)experiment.quick.*simulated_label"):
        sentiment.quick_config(typo)


def test_arms_and_their_configs(built: PipelineConfig) -> None:
    ec = built.experiment
    assert [a.name for a in sentiment.arms(ec, quick=False)] == [
        "ppo seed 0", "ppo seed 1", "ppo seed 2", "grpo seed 0", "negated", "shuffled",
    ]  # fmt: skip
    assert [(a.name, a.kind) for a in sentiment.arms(ec, quick=True)] == [("ppo seed 0", "main")]  # one arm
    quick = sentiment.arms(ec.model_copy(update={"seeds": [0], "second_method": None}), quick=False)
    assert [(a.kind, a.control, a.seed) for a in quick] == [
        ("main", "none", 0), ("negated", "negate", 0), ("shuffled", "shuffle", 0),
    ]  # fmt: skip
    cfg = sentiment.arm_config(built, quick[1], "models:/alignops-sft/1", "models:/alignops-sentiment-reward/1")
    assert cfg.ppo.reward_control == "negate" and cfg.ppo.sources == ["vadersentiment/"] and cfg.ppo.fixed_length
    assert cfg.tracking.model_prefix == "alignops-sentiment" and cfg.seed == 0
    assert (cfg.ppo.iterations, cfg.ppo.rollout_batch_size) == (built.ppo.iterations, built.ppo.rollout_batch_size)
    sized = built.model_copy(update={"experiment": ec.model_copy(update={"iterations": 7, "rollout_batch_size": 32})})
    arm = sentiment.arm_config(sized, quick[0], "models:/alignops-sft/1", "models:/alignops-sentiment-reward/1")
    assert (arm.ppo.iterations, arm.ppo.rollout_batch_size) == (7, 32)  # the experiment sizes its own arms
    full = sentiment.arms(ec, quick=False)
    # under a KL budget each control is matched to the main arm of its seed: the shuffled control (no signal: its KL
    # may never reach the budget) trains as many iterations, the negated control stops at the KL the main arm
    # measured (the budget's lagging trigger let the main arms overshoot it); every other arm keeps its own budget
    done = {("main", 0): {"iterations": 17, "kl": 5.5}, ("main", 1): {"iterations": 23, "kl": 7.0}}
    budgeted = sized.model_copy(update={"experiment": sized.experiment.model_copy(update={"ppo": {"stop_at_kl": 4.0}})})
    configs = [sentiment.arm_config(budgeted, a, "models:/alignops-sft/1", "models:/r/1", done).ppo for a in full]
    assert [(c.stop_at_kl, c.iterations) for c in configs] == [(4.0, 7)] * 4 + [(5.5, 7), (4.0, 17)]
    assert [c.reward_control for c in configs[4:]] == ["negate", "shuffle"]
    assert sentiment.matched_to_main(full[5], {}, 4.0) == {}  # no main arm of its seed ran: its own budget and cap
    assert sentiment.matched_to_main(full[4], {("main", 1): done["main", 1]}, 4.0) == {}  # another seed's
    unbudgeted = [sentiment.arm_config(sized, a, "models:/alignops-sft/1", "models:/r/1", done).ppo for a in full]
    assert {(c.stop_at_kl, c.iterations) for c in unbudgeted} == {(None, 7)}  # no budget: every arm trains the cap
    grpo = sentiment.arm_config(sized, full[3], "models:/alignops-sft/1", "models:/alignops-sentiment-reward/1")
    # the same episodes per iteration as a PPO arm: 32 / group_size prompts, each sampled group_size times
    assert (grpo.ppo.method, grpo.ppo.rollout_batch_size * grpo.ppo.group_size) == ("grpo", 32)
    # experiment.ppo's fields over the ppo section; the arm's own fields stay the arm's; a typo is an error
    tuned = built.model_copy(update={"experiment": ec.model_copy(update={"ppo": {"lr": 5e-4, "init_kl_coef": 0.2}})})
    arm = sentiment.arm_config(tuned, quick[1], "models:/alignops-sft/1", "models:/alignops-sentiment-reward/1")
    assert (arm.ppo.lr, arm.ppo.init_kl_coef, arm.ppo.reward_control) == (5e-4, 0.2, "negate")
    assert arm.ppo.minibatch_size == built.ppo.minibatch_size  # the rest is the pipeline's
    for bad, message in (({"learnrate": 1e-3}, "valid ppo section.*learnrate"), ({"temperature": 1.0}, "temperature")):
        wrong = built.model_copy(update={"experiment": ec.model_copy(update={"ppo": bad})})
        with pytest.raises(ConfigError, match=f"(?s)experiment.ppo.*{message}"):
            sentiment.arm_config(wrong, quick[0], "models:/alignops-sft/1", "models:/alignops-sentiment-reward/1")
    # experiment.second_ppo's fields over those for the second method's arm alone; checked like experiment.ppo's
    second = ec.model_copy(update={"ppo": {"lr": 5e-4, "init_kl_coef": 0.2}, "second_ppo": {"lr": 2.5e-4}})
    own = built.model_copy(update={"experiment": second})
    grpo = sentiment.arm_config(own, full[3], "models:/alignops-sft/1", "models:/alignops-sentiment-reward/1")
    assert (grpo.ppo.method, grpo.ppo.lr, grpo.ppo.init_kl_coef) == ("grpo", 2.5e-4, 0.2)
    for arm in (full[0], full[4], full[5]):  # the main method's arms and the controls keep experiment.ppo's
        assert sentiment.arm_config(own, arm, "models:/alignops-sft/1", "models:/r/1").ppo.lr == 5e-4
    for bad, message in (({"lrr": 1e-3}, "valid ppo section.*lrr"), ({"method": "rloo"}, "method")):
        wrong = built.model_copy(update={"experiment": ec.model_copy(update={"second_ppo": bad})})
        with pytest.raises(ConfigError, match=f"(?s)experiment.second_ppo.*{message}"):
            sentiment.arm_config(wrong, full[3], "models:/alignops-sft/1", "models:/alignops-sentiment-reward/1")
        sentiment.arm_config(wrong, full[0], "models:/alignops-sft/1", "models:/r/1")  # not the main arm's
    # held out: English VADER prefixes from the rollout set's test split, never a train prompt
    held = sentiment.heldout_prefixes(built)
    train = {r["prompt"] for r in sentiment.datasets.load_split(built.data.data_dir, "rollout_prompts", "train")}
    assert held and all(r["source"].startswith("vadersentiment/") for r in held)
    assert not {r["prompt"] for r in held} & train


def test_the_experiments_reward_model_config(built: PipelineConfig) -> None:
    """From the SFT policy, on the raters' rankings or the simulated labeler's, with experiment.reward's fields
    over the pipeline's reward section; a field the reward section does not have is an error."""
    sft_uri = "models:/alignops-sft/1"
    plain = sentiment.reward_config(built, sft_uri)
    assert plain.reward.base_model == sft_uri and plain.reward.sources == ["vadersentiment/"]
    assert plain.reward.lr == built.reward.lr and plain.tracking.model_prefix == "alignops-sentiment"
    ec = built.experiment.model_copy(update={"simulated_labels": 8, "reward": {"lr": 1e-3, "max_steps": 7}})
    own = sentiment.reward_config(built.model_copy(update={"experiment": ec}), sft_uri)
    assert own.reward.sources == [simulated_labels.SOURCE] and (own.reward.lr, own.reward.max_steps) == (1e-3, 7)
    assert own.reward.batch_size == built.reward.batch_size  # the rest is the pipeline's
    typo = built.experiment.model_copy(update={"reward": {"learning_rate": 1e-3}})
    with pytest.raises(ConfigError, match="(?s)experiment.reward does not make a valid reward section.*learning_rate"):
        sentiment.reward_config(built.model_copy(update={"experiment": typo}), sft_uri)


@pytest.mark.slow
def test_experiment_flow_one_seed_and_the_controls(built: PipelineConfig, built_project, prefect_harness) -> None:
    pretrain.run(built)
    sft.run(built)
    labelled = [*TINY_EXPERIMENT, "experiment.simulated_labels=4", "experiment.labels_per_prompt=2"]
    labelled += ["experiment.seeds=[0]", "experiment.second_method=null"]  # one seed and the controls
    labelled += ["experiment.ppo.stop_at_kl=1000.0"]  # a KL budget no tiny arm reaches: the controls are matched
    result = sentiment_experiment("tiny", built_project.overrides + labelled)

    rows = result["rows"]
    assert [r["name"] for r in rows] == ["ppo seed 0", "negated", "shuffled"]
    n = len(sentiment.heldout_prefixes(load_config("tiny", built_project.overrides + labelled)))
    for row in rows:  # every held-out prefix compared once per judge: wins + losses + ties
        for judge in ("vader", "afinn", "reward"):
            assert sum(row[f"win_rate/{judge}_{k}"] for k in ("wins", "losses", "ties")) == n
        assert row["kl"] >= 0 and row["reference_ppl"] > 1 and row["minutes"] > 0
        assert row["length"] == row["length_sft"] == 6  # fixed-length continuations, in training and measurement
    assert result["missed"]  # a 2-iteration tiny policy meets none of the real targets, and the report says so
    # every arm trains the cap of 2 (a 5-iteration KL window never fills); the negated control's budget is the KL
    # the main arm measured on the held-out prefixes
    assert [sentiment.iterations_trained(r["policy"]) for r in rows] == [2, 2, 2]
    negated_config = tracking.run_config(sentiment._run_of(rows[1]["policy"]))
    assert negated_config["ppo"]["stop_at_kl"] == pytest.approx(rows[0]["kl"])
    assert rows[0]["kl"] != 1000.0  # not the experiment's budget
    assert "- ppo seed 0: not at the target within" in result["table"]

    # the arms' models are the experiment's own: the pipeline's policy and reward names stay empty
    client = mlflow.MlflowClient()
    assert len(client.search_model_versions("name='alignops-sentiment-policy'")) == 3
    assert len(client.search_model_versions("name='alignops-sentiment-reward'")) == 1
    assert not client.search_model_versions("name='alignops-policy'")
    report = client.get_run(result["report_run_id"])
    assert report.data.tags[tracking.EXPERIMENT_TARGETS_TAG].startswith("missed: ")
    # the rows were read at the trainer precision: the fixtures' fp32 (bf16 below)
    assert report.data.tags[tracking.PRECISION_TAG] == built.trainer.precision == FP32
    assert {row["precision"] for row in rows} == {FP32}
    decisive = sum(report.data.metrics[f"reward_judge_agreement_{k}"] for k in ("wins", "losses", "ties"))
    assert decisive <= n and result["table"].startswith("Reward model vs vader on pairs of SFT continuations")
    table = mlflow.artifacts.download_artifacts(run_id=result["report_run_id"], artifact_path="results/results.json")
    assert [r["name"] for r in json.loads(Path(table).read_text(encoding="utf-8"))] == [r["name"] for r in rows]
    assert "figures/reward_vs_kl.png" in tracking.artifact_paths(result["report_run_id"], "figures")
    # what each arm wrote beside SFT on every held-out prefix, with the scores the win rates count
    texts = mlflow.artifacts.download_artifacts(
        run_id=result["report_run_id"], artifact_path="continuations/negated.jsonl"
    )
    pairs = [json.loads(line) for line in Path(texts).read_text(encoding="utf-8").splitlines()]
    assert len(pairs) == n and all(isinstance(p["policy"], str) and isinstance(p["sft"], str) for p in pairs)
    negated = next(r for r in rows if r["name"] == "negated")
    assert sum(p["vader"] > p["vader_sft"] for p in pairs) == negated["win_rate/vader_wins"]
    assert sum(p["reward"] < p["reward_sft"] for p in pairs) == negated["win_rate/reward_losses"]
    assert all("continuations" not in row for row in rows)  # kept out of the rows and results.json

    # SFT samples scored by another reward model are never compared with this one's scores (a cache shared across
    # reward models once reported wrong reward-model win rates)
    cfg = load_config("tiny", built_project.overrides + labelled)
    other = reward.run(sentiment.reward_config(cfg.model_copy(update={"seed": 1}), result["sft"])).model_uri
    arm, prompts = sentiment.arms(cfg.experiment, quick=True)[0], [r["prompt"] for r in sentiment.heldout_prefixes(cfg)]
    cache, models = {}, ModelCache()
    with forward_precisions() as fp32:
        by_other = sentiment.measure(cfg, arm, rows[0]["policy"], result["sft"], other, prompts, models, cache)
        by_own = sentiment.measure(cfg, arm, rows[0]["policy"], result["sft"], result["reward"], prompts, models, cache)
    bf16 = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"precision": BF16_MIXED})})
    with forward_precisions() as seen:
        in_bf16 = sentiment.measure(bf16, arm, rows[0]["policy"], result["sft"], result["reward"], prompts, models, {})
    assert by_own["score/reward_sft"] == pytest.approx(rows[0]["score/reward_sft"]) != by_other["score/reward_sft"]
    # every model pass of a measurement runs at trainer.precision, and the row says which
    assert (fp32, by_own["precision"]) == ({torch.float32}, FP32)
    assert (seen, in_bf16["precision"]) == ({torch.bfloat16}, BF16_MIXED)

    # the reward model learnt from the simulated labeler's rankings of the SFT policy's continuations alone
    reward_run = tracking.model_version_tags(result["reward"])[tracking.RUN_ID_TAG]
    assert tracking.run_config(reward_run)["reward"]["sources"] == [simulated_labels.SOURCE]
    ranked = datasets.load_split(built.data.data_dir, "rankings", "train")
    assert sum(r["annotator"] == simulated_labels.LABELER for r in ranked) == 4

    # a reward model can be reused instead of trained, only if it is one the experiment would have trained
    reuse = [*built_project.overrides, *labelled, f"experiment.reward_model={result['reward']}"]
    assert sentiment.reused_reward(load_config("tiny", reuse), result["sft"]) == result["reward"]
    with pytest.raises(ConfigError, match="not from models:/alignops-sft/9"):
        sentiment.reused_reward(load_config("tiny", reuse), "models:/alignops-sft/9")
    with pytest.raises(ConfigError, match="not the experiment's"):  # the raters' rankings, not the simulated ones
        sentiment.reused_reward(load_config("tiny", [*reuse, "experiment.simulated_labels=0"]), result["sft"])
