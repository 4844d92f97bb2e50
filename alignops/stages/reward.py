"""Reward modelling: a scalar head on the SFT model, trained on every ordered pair of the human rankings with a
pairwise Bradley-Terry loss; registers <prefix>-reward with a quality verdict PPO checks before using it.

    result = run(load_config("tiny"))      # or: alignops reward --preset tiny

Reported on the held-out test rankings: pairwise accuracy, the accuracy of "the longer response wins" (the
length bias a reward model must beat), and two ceilings from VADER's raw ratings: single-rater and split-half panel
agreement, overall and per source (alignops.stages.reward_report). The gate
also refuses a model that reads length or prefers silence (alignops.stages.reward_bias): |corr(score, length)| over
a bound, length-matched pair accuracy at chance, an empty reply scoring above the SFT model's typical reply.
"""

from __future__ import annotations

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.precision import inference_autocast
from alignops.stages import training
from alignops.stages.data import require_valid


def quality_gate(accuracy: float, length_baseline: float, floor: float, bias_checks: bool = True) -> list[str]:
    """Why a reward model is not good enough to optimise against ([] when it is). Not beating "the longer response
    wins" is the first of the length-bias checks: reward.bias_checks=false turns it off with the others."""
    reasons = []
    if accuracy < floor:
        reasons.append(
            f"held-out pair accuracy {accuracy:.3f} is under the floor {floor:.3f} by {floor - accuracy:.3f}"
        )
    if bias_checks and accuracy <= length_baseline:
        reasons.append(
            f"held-out pair accuracy {accuracy:.3f} does not beat the longer-response-wins baseline "
            f"{length_baseline:.3f} (short by {length_baseline - accuracy:.3f}): it may be rewarding length"
        )
    return reasons


BIAS_PAIRS, BIAS_PROMPTS = 512, 32  # held-out pairs and SFT replies the bias checks read: bounded cost


def _text_scorer(model, tok, max_len: int):
    """(prompts, responses) -> scores by the reward model, tokenized exactly as PairDataset tokenizes pairs.
    tok: the base's alignops.chat.ChatTokenizer."""
    import torch

    from alignops.data.loaders import chat_example, collate_right_pad

    collate = collate_right_pad(tok.pad_id)

    def score(prompts, responses) -> list[float]:
        rows = [
            {"input_ids": torch.tensor(chat_example(tok, p, r, max_len)[0])}
            for p, r in zip(prompts, responses, strict=True)
        ]
        out = []
        with torch.no_grad():
            for i in range(0, len(rows), 32):
                batch = collate(rows[i : i + 32])
                out += model.score(batch["input_ids"], batch["attention_mask"]).tolist()
        return out

    return score


def _sft_replies(base, prompts: list[str], seed: int, precision: str | None) -> dict[str, str]:
    """The SFT model's sampled reply to each prompt: what "a typical reply" means to the emptiness check."""
    from alignops.inference import Generator, decoding

    completions = Generator(base.gpt, base.tokenizer, precision=precision).complete(
        prompts, decoding("sample", max_new_tokens=32, seed=seed)
    )
    return dict(zip(prompts, completions, strict=True))


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> training.TrainResult:
    require_valid(cfg)
    from alignops.data.preferences import length_baseline_accuracy
    from alignops.stages.reward_bias import BiasBounds, bias_reasons, measure
    from alignops.stages.reward_report import accuracy_by_source, ceiling_metrics, lexicon_baseline_accuracy
    from models.reward import RewardModel

    rc = cfg.reward
    start = training.start_from_base(cfg, "reward", rc, default="sft")
    base = start.model
    data = training.preference_data(cfg, rc, start, by_ranking=rc.batch_by_ranking, empty_negatives=rc.empty_negatives)
    rankings, pairs, loaders = data.rankings, data.pairs, data.loaders
    hparams = training.finetune_hparams(rc) | {"margin": rc.margin, "center_coef": rc.center_coef}
    module = RewardModel.from_base(base.gpt, dropout=cfg.model.dropout, compile=cfg.trainer.compile, **hparams)

    with tracking.stage_run("reward", cfg, rc, parent_run_id, start.resume_run_id) as stage:
        start.started(stage.run_id)
        if start.resume_run_id is None:
            stage.set_tags({tracking.PARENT_MODEL_TAG: start.uri})
            stage.log_metrics({f"data/{s}_pairs": len(p) for s, p in pairs.items()} | training.parameter_counts(module))
        trainer = training.build_trainer(cfg, rc, start.stage_dir, tracking.lightning_logger(stage.run_id))
        trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=start.checkpoint)
        best = training.best_checkpoint(trainer)  # early stopping on val/loss: the weights tested and published
        test = {k: float(v) for k, v in trainer.test(module, loaders["test"], ckpt_path=best, verbose=False)[0].items()}
        metrics = {
            "reward/accuracy": test["test/accuracy"],
            "reward/length_baseline_accuracy": length_baseline_accuracy(pairs["test"]),
            "reward/reward_mean": test["test/reward_mean"],
            "reward/reward_std": test["test/reward_std"],
            "reward/trained_steps": float(trainer.global_step),  # under max_steps when early stopping ended it
        }
        best_score = next((c.best_model_score for c in trainer.checkpoint_callbacks if c.monitor), None)
        if best_score is not None:
            metrics["reward/best_val_loss"] = float(best_score)
        metrics.update(ceiling_metrics(rankings["test"]))  # single-rater and split-half panel agreement
        reasons = quality_gate(
            metrics["reward/accuracy"], metrics["reward/length_baseline_accuracy"], rc.min_accuracy, rc.bias_checks
        )
        whole = training.trained(trainer, module)  # whole weights under FSDP too
        scorer = _text_scorer(whole.eval(), start.chat, rc.max_len or base.gpt.max_positions)
        test_pairs = pairs["test"][:: max(1, len(pairs["test"]) // BIAS_PAIRS)]  # spread: every source in it
        prompts = [p.prompt for p in test_pairs]
        replies = _sft_replies(base, sorted(set(prompts))[:BIAS_PROMPTS], cfg.seed, cfg.trainer.precision)
        with inference_autocast(cfg.trainer.precision, next(whole.parameters()).device, whole):  # as it was trained
            evidence = measure(scorer, test_pairs, replies, lambda text: len(start.chat.encode_batch([text])[0]))
            chosen, rejected = (
                scorer(prompts, [p.chosen for p in test_pairs]),
                scorer(prompts, [p.rejected for p in test_pairs]),
            )
        metrics.update(evidence.metrics())
        by_source = accuracy_by_source(chosen, rejected, test_pairs)
        metrics.update({f"reward/accuracy/{family}": value for family, value in by_source.items()})
        lexicon = lexicon_baseline_accuracy(pairs["test"])
        if lexicon is not None:  # beside the length baseline: what the VADER lexicon alone gets on English pairs
            metrics["reward/lexicon_baseline_accuracy"] = lexicon
        if rc.bias_checks:  # measured and logged either way
            reasons += bias_reasons(evidence, BiasBounds(max_abs_length_corr=rc.max_abs_length_corr))
        stage.log_metrics(metrics)
        stage.set_tags({tracking.REWARD_GATE_TAG: "passed" if not reasons else "failed: " + "; ".join(reasons)})

        uri, version, model_dir = training.publish(
            start,
            whole.export(),
            registered="reward",
            kind="reward",
            extra={"metrics": metrics, "gate": reasons},
            tags={tracking.REWARD_GATE_TAG: "passed" if not reasons else "failed"},
            head=whole.head,
        )
        return training.TrainResult(stage.run_id, uri, version, metrics, model_dir)
