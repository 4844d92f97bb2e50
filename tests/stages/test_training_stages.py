"""Pretrain -> SFT -> classify on CPU with real Lightning and a real MLflow store: learning happens, models
are registered with their lineage, and a registered model generates."""

from __future__ import annotations

import mlflow
import torch
from typer.testing import CliRunner

from alignops import tracking
from alignops.artifacts import load_model
from alignops.cli import app
from alignops.config import PipelineConfig
from alignops.stages import classify, dpo, pretrain, reward, sft


def history(run_id: str, key: str) -> list[float]:
    client = mlflow.MlflowClient(tracking.tracking_uri())
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_pretrain_sft_classify_chain(built: PipelineConfig) -> None:
    base = pretrain.run(built)
    losses = history(base.run_id, "train/loss")
    assert len(losses) >= 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    assert base.model_uri == "models:/alignops-base/1"
    assert base.metrics["val/loss"] < base.metrics["val/unigram_loss"] + 1.0  # sane scale, not a diverged run

    # bf16 autocast, as on a GPU, exercised on the CPU
    bf16 = built.model_copy(update={"trainer": built.trainer.model_copy(update={"precision": "bf16-mixed"})})
    tuned = sft.run(bf16)
    assert tuned.model_uri == "models:/alignops-sft/1"
    client = mlflow.MlflowClient(tracking.tracking_uri())
    version = client.get_model_version("alignops-sft", "1")
    assert version.tags["alignops.parent_model"] == "models:/alignops-base/1"
    assert version.tags["alignops.data_version"].endswith(".dir")
    assert version.tags["alignops.git_commit"]
    # SFT trained every parameter of the base model
    before = load_model(tracking.resolve_model("models:/alignops-base/1")).gpt.state_dict()
    after = load_model(tracking.resolve_model("models:/alignops-sft/1")).gpt.state_dict()
    unchanged = [k for k in before if torch.equal(before[k], after[k]) and not k.endswith("attn.bias")]
    assert unchanged == []
    samples = mlflow.artifacts.load_dict(f"runs:/{tuned.run_id}/samples/sft_samples.json")["samples"]
    assert len(samples) == built.sft.sample_prompts and all("completion" in s for s in samples)

    result = CliRunner().invoke(
        app, ["generate", "--model", "models:/alignops-sft/latest", "--prompt", "Say hi", "--strategy", "beam",
              "--max-new-tokens", "8"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "### Say hi" in result.output

    served = mlflow.pyfunc.load_model("models:/alignops-sft/1")  # the registered model as MLflow serves it
    completions = served.predict(["Say hi", "Write a tweet."], params={"max_new_tokens": 4, "strategy": "sample"})
    assert len(completions) == 2 and all(isinstance(c, str) for c in completions)

    rm = reward.run(built)
    assert rm.model_uri == "models:/alignops-reward/1"
    rm_version = client.get_model_version("alignops-reward", "1")
    assert rm_version.tags["alignops.parent_model"] == "models:/alignops-sft/1"
    assert rm_version.tags["alignops.reward_gate"] in ("passed", "failed")
    assert {"reward/accuracy", "reward/length_baseline_accuracy", "reward/single_rater_agreement",
            "reward/split_half_agreement"} <= set(rm.metrics)  # fmt: skip
    scorer = load_model(rm.model_dir)
    assert scorer.meta.kind == "reward" and scorer.head is not None

    policy = dpo.run(built)
    assert policy.model_uri == "models:/alignops-policy/1" and "test/accuracy" in policy.metrics
    assert client.get_model_version("alignops-policy", "1").tags["alignops.method"] == "dpo"

    classifier = classify.run(built)
    assert classifier.model_uri == "models:/alignops-classifier/1"
    for key in ("test/accuracy", "test/precision", "test/recall", "test/f1", "test/f1_negative", "test/majority_f1"):
        assert 0.0 <= classifier.metrics[key] <= 1.0, key
    artifacts = [a.path for a in client.list_artifacts(classifier.run_id, "figures")]
    assert artifacts == ["figures/confusion_matrix.png"]
    loaded = load_model(classifier.model_dir)
    assert loaded.meta.labels == ["negative", "positive"] and loaded.head is not None

    # packed SFT: pairs share rows (best-fit decreasing), each attending to itself; it trains and registers
    packed_cfg = built.model_copy(update={"sft": built.sft.model_copy(update={"packing": True})})
    packed = sft.run(packed_cfg)
    assert packed.model_uri == "models:/alignops-sft/2"
    logged = client.get_run(packed.run_id).data.metrics
    # the tiny preset's pairs mostly fill more than half its 64-token rows, so few share one
    assert logged["data/packed_rows"] <= logged["data/train_examples"] and 0.5 < logged["data/packed_fill"] <= 1.0
    assert history(packed.run_id, "train/tokens_per_sec") and torch.isfinite(torch.tensor(packed.metrics["val/loss"]))
