"""Evaluation: every model the pipeline makes measured the same way, against a baseline, logged to one MLflow
run "evaluate" that the model version points at (tags alignops.eval_run_id, alignops.eval_baseline).

    result = run(load_config("tiny"))                                  # the latest <prefix>-policy
    result = run(cfg, model_uri="models:/alignops-sft/2")             # or: alignops evaluate --model models:/...
    result.metrics["eval/ppl"], result.metrics["eval/win_rate_judge"]
    tracking.evaluation_of("models:/alignops-sft/2")                  # what the promotion gate reads back

What is measured follows the model's kind (alignops.json):
  causal_lm (base, sft, policy, compressed)
    eval/loss, eval/ppl                  held-out corpus (test split), token-weighted, capped
    eval/accuracy, precision, recall, f1 (macro), {precision,recall,f1}_<label>, unparseable_rate
                                         held-out classification: the model answers the sentiment question the
                                         SFT data asks; its answer is parsed into a label, unparseable = wrong
    eval/instruct_...                    instruction set (sft test): the same figures on its sentiment tasks
                                         (the only ones with a checkable answer), and instruct_loss/_ppl of the
                                         reference responses over every task
    eval/kl, response_len, eos_rate      fixed eval prompts, one sampled response each
    eval/reward, judge_score, judged_prompts     on the prompts whose goal the judges measure (task write,
                                         continue, answer; never a classification question, scored by F1 alone)
    eval/win_rate_judge (VADER or snownlp, by the PROMPT's language), win_rate_afinn (AFINN, English prompts),
    win_rate_reward, each with _wins/_losses/_ties, the rate over decisive comparisons (ties are no evidence),
    _low/_high (95% Wilson) and _boot_low/_boot_high (bootstrap over prompts); win_rate_gap = reward - judge
                                         against the baseline, on the judged prompts: a positive gap (the reward
                                         model likes the model more than the independent judge does) is the
                                         mark of reward hacking
    human/...                            ratings and judgments of this version in the preference store
    eval/ppl_bigram, ppl_trigram, ppl_margin (trigram - model); eval/{accuracy,precision,recall,f1}_bow, f1_margin
                                         (model - bag of words): alignops.evaluation.baselines on the same examples
    samples.jsonl                        the eval prompts' responses with their scores, for the dashboard
  classifier: the classification figures, predicted directly by its head
  reward: eval/pair_accuracy on held-out rankings (and eval/pair_accuracy/<source>), the length baseline, the
          single-rater agreement, and agreement with the judge
  tagger (ner): eval/entity_{precision,recall,f1}_{micro,macro}, eval/{precision,recall,f1}_<PER|LOC|ORG>,
                eval/char_accuracy on the ner test split, baseline/... of the bag-of-words window classifier and
                eval/entity_f1_margin_over_baseline (alignops.evaluation.ner)
Figures (PNG, under figures/): confusion matrix, PPO reward and KL per iteration (a PPO policy), response
lengths against the baseline, reward-model score against judge score.

Each suite is a module of alignops.evaluation (language_modelling, classification, instructions, alignment,
reward_quality, human, baselines, ner); this stage resolves the model, its baseline, KL reference and reward
model, runs the suites its kind calls for and logs what they return.

The baseline is evaluate.baseline, else the registered model's `champion` unless that is this very version,
else the model's parent. The KL reference is the model's parent (the SFT model of a policy, the original of
a compressed model); a model without a causal-LM parent gets no KL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from alignops import settings, tracking
from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.errors import ModelError
from alignops.evaluation import ner as ner_eval
from alignops.evaluation.models import CAUSAL_LM, ModelCache, same_tokenizer
from alignops.jsonl import write_jsonl
from alignops.precision import autocast, inference_precision
from alignops.stages.data import require_valid

__all__ = ["CAUSAL_LM", "EvaluateResult", "EvaluationError", "ModelCache", "default_baseline", "run"]


class EvaluationError(ModelError):
    """A model, baseline or setting this evaluation cannot use; the message says which and what to do."""


@dataclass(frozen=True)
class EvaluateResult:
    run_id: str
    model_uri: str  # the exact version evaluated
    baseline_uri: str | None  # what win rates compare against; None when there was nothing to compare
    metrics: dict[str, float]
    samples_path: Path | None  # samples.jsonl of a generative model, kept under ALIGNOPS_HOME/evaluations/<run>


def default_baseline(uri: str, parent: str | None) -> str | None:
    """The registered model's champion unless that is `uri` itself, else the parent (pinned), else None."""
    if tracking.ModelRef.is_registry_uri(uri):
        name = tracking.ModelRef.parse(uri).name
        champion = tracking.alias_uri(name, "champion")
        if champion is not None and champion != uri:
            return champion
    return tracking.version_uri(parent) if parent else None


def _reward_model_uri(cfg: PipelineConfig) -> str | None:
    """The configured reward model, or the newest <prefix>-reward; None when none is registered (not configured)."""
    if cfg.evaluate.reward_model:
        return tracking.version_uri(cfg.evaluate.reward_model)
    try:
        return tracking.version_uri(f"models:/{cfg.tracking.model_prefix}-reward/latest")
    except FileNotFoundError:
        return None


def run(cfg: PipelineConfig, model_uri: str | None = None, parent_run_id: str | None = None) -> EvaluateResult:
    require_valid(cfg)
    from alignops.evaluation import figures
    from alignops.evaluation.alignment import compare_on_prompts, draw_ppo_history
    from alignops.evaluation.baselines import baseline_metrics
    from alignops.evaluation.classification import classify_held_out
    from alignops.evaluation.human import summarize_version
    from alignops.evaluation.instructions import score_instructions
    from alignops.evaluation.language_modelling import score_corpus
    from alignops.evaluation.reward_quality import assess_reward_model

    ec = cfg.evaluate
    uri = tracking.version_uri(model_uri or ec.model or f"models:/{cfg.tracking.model_prefix}-policy/latest")
    folder = tracking.resolve_model(uri)
    models = ModelCache()
    if ner_eval.is_tagger(folder):  # a ner model: entity scores on the ner set (alignops.evaluation.ner)
        precision = inference_precision(cfg.trainer.precision, models.device)
        with autocast(precision, models.device):
            run_id, metrics = ner_eval.evaluate_registered(cfg, uri, folder, parent_run_id, precision)
        return EvaluateResult(run_id, uri, None, metrics, None)
    model = models.get(uri)
    kind = model.meta.kind
    parent = model.meta.parent  # alignops.json; else the registered version's lineage tag
    if parent is None and tracking.ModelRef.is_registry_uri(uri):
        parent = tracking.model_version_tags(uri).get(tracking.PARENT_MODEL_TAG)
    parent = tracking.version_uri(parent) if parent not in (None, "", "none") else None
    generative = kind == CAUSAL_LM
    longest = max(ec.max_new_tokens, ec.answer_tokens)
    context = model.gpt.max_positions
    if generative and longest >= context:
        raise EvaluationError(
            f"evaluate.max_new_tokens={ec.max_new_tokens} / answer_tokens={ec.answer_tokens} leave no room for a "
            f"prompt in {uri}'s {context}-token context: set them below {context // 2}."
        )
    baseline_uri = reference_uri = reward_uri = None
    if generative:  # classifiers and reward models are not compared response by response
        baseline_uri = tracking.version_uri(ec.baseline) if ec.baseline else default_baseline(uri, parent)
        if baseline_uri is not None and models.get(baseline_uri).meta.kind != CAUSAL_LM:
            if ec.baseline:
                raise EvaluationError(
                    f"evaluate.baseline={ec.baseline} is a {models.get(baseline_uri).meta.kind} model: win rates "
                    "compare responses, so the baseline must be a causal_lm. Name a base, SFT or policy version."
                )
            baseline_uri = None
        if parent is not None:
            reference = models.get(parent)
            if reference.meta.kind == CAUSAL_LM and same_tokenizer(reference, model):
                reference_uri = parent  # a token-level KL needs the same tokenizer
        reward_uri = _reward_model_uri(cfg)
    # every model pass at the precision training uses (bf16 autocast where the hardware has it; fp32 with int8)
    used_models = [models.get(u).gpt for u in (uri, baseline_uri, reference_uri, reward_uri) if u]
    precision = inference_precision(cfg.trainer.precision, models.device, *used_models)

    with (
        tracking.stage_run("evaluate", cfg, ec, parent_run_id) as stage,
        autocast(precision, models.device),
    ):
        out_dir = settings.home() / "evaluations" / stage.run_id
        stage.set_tags(tracking.evaluation_run_tags(uri, kind, baseline_uri, reward_uri, reference_uri, precision))
        used = ["classification/test"]
        metrics: dict[str, float] = {}
        plots: dict[str, Path] = {}
        samples_path = None

        if kind == "reward":
            used = ["rankings/test"]
            metrics, plots = assess_reward_model(cfg, model, out_dir)
        else:
            scored, predictions = classify_held_out(cfg, model)
            metrics |= scored.as_metrics("eval/")
            columns = [*scored.labels, "unparseable"] if generative else scored.labels
            matrix = [row[: len(columns)] for row in scored.confusion]
            title = "held-out classification" + (" (answers parsed)" if generative else "")
            plots["confusion_matrix.png"] = figures.confusion_matrix(
                matrix, scored.labels, columns, out_dir / "confusion_matrix.png", title
            )
            stage.log_artifact(write_jsonl(predictions, out_dir / "predictions.jsonl"))
        if generative:
            used += ["corpus/test", "sft/test", "eval_prompts/test"]
            metrics |= score_corpus(cfg, model)
            metrics |= score_instructions(cfg, model)
            found, samples, drawn = compare_on_prompts(
                cfg, model, uri, models, baseline_uri, reference_uri, reward_uri, out_dir
            )
            metrics |= found
            plots |= drawn
            ppo_plot = draw_ppo_history(uri, out_dir)
            if ppo_plot is not None:
                plots["ppo_training.png"] = ppo_plot
            samples_path = write_jsonl(samples, out_dir / "samples.jsonl")
            stage.log_artifact(samples_path)
            metrics |= summarize_version(uri)
        if kind != "reward":  # the classic baselines beside the figures above, and the margin over them
            metrics |= baseline_metrics(cfg, model, metrics)

        files = datasets.split_files(cfg.data.data_dir)
        stage.log_datasets({name: (files[name], _md5(files[name])) for name in used}, context="evaluation")
        stage.log_metrics(metrics)
        for plot in plots.values():
            stage.log_artifact(plot, "figures")
        if tracking.ModelRef.is_registry_uri(uri):
            tracking.mark_evaluated(uri, stage.run_id, baseline_uri)
        return EvaluateResult(stage.run_id, uri, baseline_uri, metrics, samples_path)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
