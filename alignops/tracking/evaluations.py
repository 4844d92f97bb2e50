"""The evaluation record: how an evaluation is written (the evaluate stage) and read back (the promotion gate,
the dashboard). An evaluation is an "evaluate" run tagged with what it evaluated against what; the registered
version points at its latest one. Writers and readers, the dashboard's test fixtures included, go through
these functions, so the record has one shape.

    with tracking.stage_run("evaluate", cfg, ec) as stage:
        stage.set_tags(tracking.evaluation_run_tags(uri, kind, baseline_uri, reward_uri, reference_uri))
        ...
    tracking.mark_evaluated(uri, stage.run_id, baseline_uri)
    tracking.evaluation_of(uri)        # {"run_id", "baseline_uri", "metrics"}, or None
"""

from __future__ import annotations

from typing import Any

from alignops.tracking.backend import connect
from alignops.tracking.registry import model_version_tags, set_model_version_tags
from alignops.tracking.tags import (
    EVAL_BASELINE_TAG,
    EVAL_RUN_TAG,
    MODEL_KIND_TAG,
    MODEL_TAG,
    PRECISION_TAG,
    REFERENCE_MODEL_TAG,
    REWARD_MODEL_TAG,
)

NONE = "none"  # the value of a tag naming no model (no baseline, no reward model, no reference)


def evaluation_run_tags(
    uri: str,
    kind: str,
    baseline_uri: str | None,
    reward_uri: str | None = None,
    reference_uri: str | None = None,
    precision: str | None = None,
) -> dict[str, str]:
    """The tags of an evaluate run: the version it evaluated, that model's kind, the baseline, reward model and KL
    reference it was measured with ("none" for each it had none of), and the precision its model passes ran at
    (alignops.precision.inference_precision; left out when not given)."""
    tags = {
        MODEL_TAG: uri,
        MODEL_KIND_TAG: kind,
        EVAL_BASELINE_TAG: baseline_uri or NONE,
        REWARD_MODEL_TAG: reward_uri or NONE,
        REFERENCE_MODEL_TAG: reference_uri or NONE,
    }
    return tags | ({PRECISION_TAG: precision} if precision else {})


def mark_evaluated(uri: str, run_id: str, baseline_uri: str | None) -> None:
    """Point registered version `uri` at its latest evaluation, the evaluate run `run_id`."""
    set_model_version_tags(uri, {EVAL_RUN_TAG: run_id, EVAL_BASELINE_TAG: baseline_uri or NONE})


def evaluation_of(model_uri: str) -> dict[str, Any] | None:
    """The latest evaluation of a registered version: {"run_id", "baseline_uri", "metrics": {name: value}};
    None when it has never been evaluated (or its evaluation run was deleted). baseline_uri is None when the
    evaluation had nothing to compare against."""
    tags = model_version_tags(model_uri)
    run_id = tags.get(EVAL_RUN_TAG)
    if not run_id:
        return None
    mlflow = connect()
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    if run.info.lifecycle_stage == "deleted":
        return None
    baseline = tags.get(EVAL_BASELINE_TAG)
    return {
        "run_id": run_id,
        "baseline_uri": None if baseline in (None, "", NONE) else baseline,
        "metrics": dict(run.data.metrics),
    }
