"""The training controls through a real stage: optimizer, schedule, penalties and early stopping from the typed
config reach Lightning and are recorded in the stage's MLflow run."""

from __future__ import annotations

import mlflow
import pytest

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.stages import pretrain, sft


def test_controls_from_the_config_train_and_are_recorded(built: PipelineConfig) -> None:
    def with_controls(section, **controls):  # validated like a preset
        return type(section).model_validate(section.model_dump() | controls)

    cfg = built.model_copy(update={
        "pretrain": with_controls(built.pretrain, optimizer="sgd", lr=0.05, momentum=0.9, schedule="linear", l2=1e-4,
                                  early_stopping_metric="val/loss", early_stopping_patience=1, val_every_n_steps=10),
        "sft": with_controls(built.sft, optimizer="adagrad", lr=0.01, schedule="constant"),
    })  # fmt: skip
    base = pretrain.run(cfg)
    client = mlflow.MlflowClient(tracking.tracking_uri())
    run = client.get_run(base.run_id)
    params = run.data.params
    assert params["optimizer"] == "sgd" and params["schedule"] == "linear" and params["l2"] == "0.0001"
    assert params["early_stopping_metric"] == "val/loss" and params["early_stopping_patience"] == "1"
    assert run.data.metrics["train/penalty"] > 0
    lrs = [m.value for m in sorted(client.get_metric_history(base.run_id, "train/lr"), key=lambda m: m.step)]
    assert lrs[-1] < lrs[len(lrs) // 2] < max(lrs) == pytest.approx(0.05)  # linear decay after the warm-up
    assert base.model_uri == "models:/alignops-base/1"

    tuned = sft.run(cfg)  # adagrad at a constant rate after the warm-up
    params = client.get_run(tuned.run_id).data.params
    assert params["optimizer"] == "adagrad" and params["schedule"] == "constant"
    lrs = [m.value for m in client.get_metric_history(tuned.run_id, "train/lr")]
    assert sorted(lrs)[-3:] == pytest.approx([0.01] * 3)
