"""The sentiment-continuation experiment as a Prefect flow under one MLflow parent run (alignops.stages.sentiment
says what it measures and why):

    SFT policy -> [a simulated labeler ranks its continuations] -> reward model on those rankings, or on the
    VADER raters' -> does it agree with the judge on the SFT policy's continuations? (else stop) -> one RL run
    per arm -> each arm against SFT -> report

    alignops experiment sentiment --preset smollm2 [--quick]      # or: python -m flows.experiment smollm2

Each arm's RL run is a cached task, so a rerun after a failure continues with the arms still missing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from prefect import flow, get_run_logger

from alignops import tracking
from alignops.config import load_config
from alignops.evaluation.models import ModelCache
from alignops.stages import sentiment, simulated_labels
from flows import tasks


@flow(name="alignops-experiment-sentiment")
def sentiment_experiment(preset: str = "tiny", overrides: list[str] | None = None, quick: bool = False) -> dict:
    cfg = load_config(preset, overrides or [])
    cfg = sentiment.quick_config(cfg) if quick else cfg
    log = get_run_logger()
    with tracking.pipeline_run(cfg, run_name=f"experiment-sentiment-{cfg.name}") as parent:
        sft = tracking.pin_uri(cfg.experiment.sft_model or f"models:/{cfg.tracking.model_prefix}-sft/latest")
        reward = sentiment.reused_reward(cfg, sft)
        if reward is None:
            if cfg.experiment.simulated_labels:  # labelers rank the policy's own continuations (simulated ones)
                log.info("simulated rankings of %s's continuations: %s", sft, simulated_labels.label(cfg, sft, parent))
            reward = tasks.train_reward(sentiment.reward_config(cfg, sft), parent)["model_uri"]
        prompts = [r["prompt"] for r in sentiment.heldout_prefixes(cfg)]
        models, sft_samples, rows, curves, done = ModelCache(), {}, [], {}, {}
        agreement = sentiment.reward_agreement(cfg, sft, reward, prompts, models, sft_samples)
        log.info("reward model vs judge on SFT continuation pairs: %s", agreement.as_metrics("agreement"))
        sentiment.require_agreement(cfg, agreement, reward)
        for arm in sentiment.arms(cfg.experiment, quick):
            started = time.perf_counter()
            policy = tasks.align(sentiment.arm_config(cfg, arm, sft, reward, done), parent)["model_uri"]
            minutes = (time.perf_counter() - started) / 60
            row = sentiment.measure(cfg, arm, policy, sft, reward, prompts, models, sft_samples)
            done[arm.kind, arm.seed] = {"iterations": sentiment.iterations_trained(policy), "kl": row["kl"]}
            rows.append(row | {"minutes": minutes})
            curves[arm.name] = sentiment.training_curve(policy)
            log.info("%s: %s", arm.name, {k: round(v, 3) for k, v in rows[-1].items() if isinstance(v, float)})
        result = sentiment.report(cfg, rows, curves, parent, agreement)
    log.info("\n%s", result.table)
    return {"parent_run_id": parent, "report_run_id": result.run_id, "sft": sft, "reward": reward,
            "rows": result.rows, "missed": result.missed, "table": result.table}  # fmt: skip


def main(argv: list[str]) -> Any:
    return sentiment_experiment(*argv[1:2])


if __name__ == "__main__":
    print(main(sys.argv)["table"])
