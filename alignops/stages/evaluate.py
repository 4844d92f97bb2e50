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

The baseline is evaluate.baseline, else the registered model's `champion` unless that is this very version,
else the model's parent. The KL reference is the model's parent (the SFT model of a policy, the original of
a compressed model); a model without a causal-LM parent gets no KL.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops import settings, tracking
from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.errors import ModelError
from alignops.evaluation import ner as ner_eval
from alignops.stages import training
from alignops.stages.classify import LABELS  # the classification set's labels
from alignops.stages.data import require_valid

SENTIMENT_TASK = datasets.SENTIMENT_SOURCE  # sft sources whose answer is a label
CAUSAL_LM = "causal_lm"


class EvaluationError(ModelError):
    """A model, baseline or setting this evaluation cannot use; the message says which and what to do."""


@dataclass(frozen=True)
class EvaluateResult:
    run_id: str
    model_uri: str  # the exact version evaluated
    baseline_uri: str | None  # what win rates compare against; None when there was nothing to compare
    metrics: dict[str, float]
    samples_path: Path | None  # samples.jsonl of a generative model, kept under ALIGNOPS_HOME/evaluations/<run>


def sample_id(prompt: str) -> str:
    """A prompt's stable id: the same prompt has the same id in every model's samples."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return path


class ModelCache:
    """Models by URI, each loaded once, in eval mode, on the GPU when there is one (int8 models on the CPU)."""

    def __init__(self) -> None:
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._loaded: dict[str, Any] = {}

    def get(self, uri: str):
        from alignops.artifacts import load_model

        if uri not in self._loaded:
            model = load_model(tracking.resolve_model(uri))
            device = "cpu" if model.meta.quantization else self.device  # int8 kernels run on the CPU only
            model.gpt.to(device).eval()
            if model.head is not None:
                model.head.to(device).eval()
            self._loaded[uri] = model
        return self._loaded[uri]


def default_baseline(uri: str, parent: str | None) -> str | None:
    """The registered model's champion unless that is `uri` itself, else the parent (pinned), else None."""
    if uri.startswith("models:/"):
        name = uri[len("models:/") :].split("/")[0].split("@")[0]
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


# ---- the parts ------------------------------------------------------------------------------------------------


def language_modelling(cfg: PipelineConfig, model) -> dict[str, float]:
    from alignops.data.loaders import encode_corpus
    from alignops.evaluation.metrics import perplexity
    from alignops.evaluation.scoring import lm_loss

    texts = [r["text"] for r in datasets.load_split(cfg.data.data_dir, "corpus", "test")]
    ids = encode_corpus(texts, model.tokenizer)
    loss, n = lm_loss(model.gpt, ids, cfg.evaluate.batch_size, cfg.evaluate.max_lm_tokens)
    return {"eval/loss": loss, "eval/ppl": perplexity(loss), "eval/lm_tokens": float(n)}


def classification(cfg: PipelineConfig, model) -> tuple[Any, list[dict[str, Any]]]:
    """(LabelMetrics, one prediction row per example) on the held-out classification set."""
    from alignops.evaluation.metrics import classification_metrics, parse_label
    from alignops.evaluation.scoring import classify, generate_responses

    ec = cfg.evaluate
    records = training.spread(
        datasets.load_split(cfg.data.data_dir, "classification", "test"), ec.max_classification_examples
    )
    texts = [r["text"] for r in records]
    if model.meta.kind == "classifier":
        labels = list(model.meta.labels or LABELS)
        trained_len = model.meta.extra.get("config", {}).get("classify", {}).get("max_len")
        max_len = min(trained_len or model.gpt.config.block_size, model.gpt.config.block_size)
        answers = classify(model, texts, labels, max_len, ec.batch_size)
        predicted: list[str | None] = list(answers)
    else:
        labels = LABELS
        prompts = [datasets.SENTIMENT_PROMPT[r["lang"]].format(text=r["text"]) for r in records]
        answers = generate_responses(
            model.gpt, model.tokenizer, prompts, ec.answer_tokens, ec.batch_size, sample=False
        ).texts
        predicted = [parse_label(a) for a in answers]
    rows = [
        {"sample_id": sample_id(r["text"]), "text": r["text"], "lang": r["lang"], "label": r["label"],
         "answer": a, "predicted": p, "correct": p == r["label"]}
        for r, a, p in zip(records, answers, predicted, strict=True)
    ]  # fmt: skip
    return classification_metrics([r["label"] for r in records], predicted, labels), rows


def instructions(cfg: PipelineConfig, model) -> dict[str, float]:
    """The instruction set (sft test): answers to its sentiment tasks parsed and scored against the reference
    answer's label; the loss of the reference responses over every task."""
    from alignops.data.loaders import SFTDataset, pad_id
    from alignops.evaluation.metrics import classification_metrics, parse_label, perplexity
    from alignops.evaluation.scoring import generate_responses, response_loss

    ec = cfg.evaluate
    records = datasets.load_split(cfg.data.data_dir, "sft", "test")
    metrics: dict[str, float] = {}
    tasks = training.spread([r for r in records if r["source"].startswith(SENTIMENT_TASK)], ec.max_instruction_examples)
    gold = [parse_label(r["response"]) for r in tasks]
    tasks = [r for r, g in zip(tasks, gold, strict=True) if g is not None]
    if tasks:
        answers = generate_responses(
            model.gpt, model.tokenizer, [r["prompt"] for r in tasks], ec.answer_tokens, ec.batch_size, sample=False
        ).texts
        scored = classification_metrics(
            [parse_label(r["response"]) for r in tasks], [parse_label(a) for a in answers], LABELS
        )
        metrics |= scored.as_metrics("eval/instruct_")
    examples = SFTDataset(training.spread(records, ec.max_instruction_examples), model.tokenizer,
                          model.gpt.config.block_size)  # fmt: skip
    if len(examples):
        loss, n = response_loss(model.gpt, [examples[i] for i in range(len(examples))], pad_id(model.tokenizer),
                                ec.batch_size)  # fmt: skip
        metrics |= {"eval/instruct_loss": loss, "eval/instruct_ppl": perplexity(loss), "eval/instruct_tokens": float(n)}
    return metrics


@dataclass
class _Answers:
    """One model's responses to the eval prompts, with their scores."""

    responses: Any  # alignops.evaluation.scoring.Responses
    judge: list[float]  # by the prompt's language: VADER (en) or snownlp (zh)
    afinn: list[float | None]  # the second English judge; None on Chinese prompts
    reward: list[float] | None


def _answer(cfg: PipelineConfig, model, prompts: list[str], langs: list[str], reward_model) -> _Answers:
    from alignops.evaluation.judges import afinn, judge_all
    from alignops.evaluation.scoring import generate_responses, reward_scores

    ec = cfg.evaluate
    # sampled (temperature 1, seeded): the policy's own distribution, which the KL and PPO's rewards are about
    responses = generate_responses(
        model.gpt, model.tokenizer, prompts, ec.max_new_tokens, ec.batch_size, sample=True, seed=cfg.seed
    )
    reward = None
    if reward_model is not None:
        reward = reward_scores(reward_model, prompts, responses.texts, ec.batch_size)
    second = [afinn(t) if lang == "en" else None for t, lang in zip(responses.texts, langs, strict=True)]
    return _Answers(responses, judge_all(responses.texts, langs), second, reward)


def judged_win_rates(mine: _Answers, theirs: _Answers, judged: list[bool], langs: list[str]) -> dict[str, float]:
    """Win rates against the baseline on the prompts whose goal the judges measure (judged[i]), never on a
    classification answer: VADER/snownlp by the prompt's language, AFINN on the English ones, the reward model's,
    and the gap reward - judge. Each with wins, losses, ties and both intervals; eval/judged_prompts counts."""
    from alignops.evaluation.metrics import AFINN_WIN_RATE, JUDGE_WIN_RATE, REWARD_WIN_RATE, win_rate

    def on(values: list, english_only: bool = False) -> list:
        return [v for v, j, lang in zip(values, judged, langs, strict=True) if j and (lang == "en" or not english_only)]

    out = {"eval/judged_prompts": float(sum(judged))}
    if not any(judged):
        return out
    by_judge = win_rate(on(mine.judge), on(theirs.judge))
    out |= by_judge.as_metrics(JUDGE_WIN_RATE)
    if on(mine.afinn, english_only=True):
        out |= win_rate(on(mine.afinn, True), on(theirs.afinn, True)).as_metrics(AFINN_WIN_RATE)
    if mine.reward is not None and theirs.reward is not None:
        by_reward = win_rate(on(mine.reward), on(theirs.reward))
        out |= by_reward.as_metrics(REWARD_WIN_RATE)
        if by_reward.rate is not None and by_judge.rate is not None:
            out["eval/win_rate_gap"] = by_reward.rate - by_judge.rate
    return out


def alignment(
    cfg: PipelineConfig, model, uri: str, models: ModelCache, baseline_uri: str | None, reference_uri: str | None,
    reward_uri: str | None, out_dir: Path,
) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, Path]]:  # fmt: skip
    """Metrics, samples.jsonl rows and figures on the fixed eval prompts."""
    from alignops.data.loaders import pad_id
    from alignops.evaluation import figures
    from alignops.evaluation.scoring import sequence_kl

    records = datasets.load_split(cfg.data.data_dir, "eval_prompts", "test")
    records = training.spread(records, cfg.evaluate.max_eval_prompts)
    prompts, langs = [r["prompt"] for r in records], [r["lang"] for r in records]
    judged = [r["task"] in datasets.JUDGED_TASKS for r in records]  # never a classification answer's label word
    reward_model = models.get(reward_uri) if reward_uri else None
    mine = _answer(cfg, model, prompts, langs, reward_model)
    lengths = mine.responses.lengths
    metrics = {
        "eval/prompts": float(len(prompts)),
        "eval/response_len": _mean(lengths),
        "eval/eos_rate": _mean([float(e) for e in mine.responses.eos]),
    }
    if any(judged):  # sentiment scores (judges' and the reward model's) only where sentiment is the goal
        metrics["eval/judge_score"] = _mean([s for s, j in zip(mine.judge, judged, strict=True) if j])
        if mine.reward is not None:
            metrics["eval/reward"] = _mean([s for s, j in zip(mine.reward, judged, strict=True) if j])
    kls = None
    if reference_uri is not None:
        reference = models.get(reference_uri)
        kls = sequence_kl(model.gpt, reference.gpt, mine.responses, pad_id(model.tokenizer), cfg.evaluate.batch_size)
        metrics["eval/kl"] = _mean(kls)

    theirs = None
    if baseline_uri is not None:
        theirs = _answer(cfg, models.get(baseline_uri), prompts, langs, reward_model)
        metrics |= {
            "eval/baseline_response_len": _mean(theirs.responses.lengths),
            "eval/baseline_eos_rate": _mean([float(e) for e in theirs.responses.eos]),
        }
        if any(judged):
            metrics["eval/baseline_judge_score"] = _mean([s for s, j in zip(theirs.judge, judged, strict=True) if j])
            if theirs.reward is not None:
                metrics["eval/baseline_reward"] = _mean([s for s, j in zip(theirs.reward, judged, strict=True) if j])
        metrics |= judged_win_rates(mine, theirs, judged, langs)

    samples = []
    for i, r in enumerate(records):
        row = {
            "sample_id": sample_id(r["prompt"]),
            "prompt": r["prompt"],
            "lang": r.get("lang"),
            "source": r.get("source"),
            "task": r["task"],
            "completion": mine.responses.texts[i],
            "model_uri": uri,
            "reward": mine.reward[i] if mine.reward is not None else None,
            "judge": mine.judge[i],
            "afinn": mine.afinn[i],
            "length": lengths[i],
            "eos": mine.responses.eos[i],
            "kl": kls[i] if kls is not None else None,
        }
        if theirs is not None:
            row |= {
                "baseline_uri": baseline_uri,
                "baseline_completion": theirs.responses.texts[i],
                "baseline_reward": theirs.reward[i] if theirs.reward is not None else None,
                "baseline_judge": theirs.judge[i],
                "baseline_afinn": theirs.afinn[i],
            }
        samples.append(row)

    plots = {}
    lengths_by_model = {"model": lengths} | ({"baseline": theirs.responses.lengths} if theirs else {})
    plots["response_lengths.png"] = figures.length_distributions(lengths_by_model, out_dir / "response_lengths.png")
    if mine.reward is not None and any(judged):

        def on_judged(values: list) -> list:
            return [v for v, j in zip(values, judged, strict=True) if j]

        points = {"model": (on_judged(mine.reward), on_judged(mine.judge))}
        if theirs is not None and theirs.reward is not None:
            points["baseline"] = (on_judged(theirs.reward), on_judged(theirs.judge))
        plots["reward_vs_judge.png"] = figures.reward_vs_judge(points, out_dir / "reward_vs_judge.png")
    return metrics, samples, plots


def ppo_history(uri: str, out_dir: Path) -> Path | None:
    """The reward and KL curves of the PPO run that made this version; None for anything else."""
    from alignops.evaluation import figures

    if not uri.startswith("models:/"):
        return None
    tags = tracking.model_version_tags(uri)
    run_id = tags.get("alignops.run_id")
    if tags.get("alignops.method") != "ppo" or not run_id:
        return None
    reward = tracking.metric_history(run_id, "ppo/reward")
    kl = tracking.metric_history(run_id, "ppo/kl")
    if not reward or not kl:
        return None
    # one row per iteration, in step order: number them 1, 2, ...
    return figures.ppo_curves(
        [(i + 1, v) for i, (_, _, v) in enumerate(reward)],
        [(i + 1, v) for i, (_, _, v) in enumerate(kl)],
        out_dir / "ppo_training.png",
    )


def reward_model_quality(cfg: PipelineConfig, model, out_dir: Path) -> tuple[dict[str, float], dict[str, Path]]:
    """A reward model on held-out rankings: pair accuracy (overall and per source), the longer-wins bar, the
    single-rater agreement of the rankings that carry one, and how the judge (by the prompt's language) sees the
    pairs."""
    from alignops.data.preferences import expand_rankings, human_ceiling, length_baseline_accuracy
    from alignops.data.prepare import detect_lang
    from alignops.evaluation import figures
    from alignops.evaluation.judges import judge
    from alignops.evaluation.scoring import reward_scores

    rankings = training.spread(datasets.load_split(cfg.data.data_dir, "rankings", "test"), cfg.evaluate.max_rankings)
    pairs = expand_rankings(rankings, weight_by=None)
    if not pairs:
        return {}, {}
    texts = sorted({(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)})
    rewards = reward_scores(model, [p for p, _ in texts], [r for _, r in texts], cfg.evaluate.batch_size)
    scores = dict(zip(texts, rewards, strict=True))
    judged = {t: judge(t[1], detect_lang(t[0]) or "en") for t in texts}

    def margin(table: dict, p) -> float:
        return table[(p.prompt, p.chosen)] - table[(p.prompt, p.rejected)]

    rm = [margin(scores, p) for p in pairs]
    jm = [margin(judged, p) for p in pairs]
    metrics = {
        "eval/pairs": float(len(pairs)),
        "eval/pair_accuracy": _mean([float(m > 0) for m in rm]),
        "eval/length_baseline_accuracy": length_baseline_accuracy(pairs),
        "eval/judge_pair_accuracy": _mean([float(m > 0) for m in jm]),  # the judge's view of the human order
        "eval/judge_agreement": _mean([float((a > 0) == (b > 0)) for a, b in zip(rm, jm, strict=True)]),
    }
    for source in sorted({p.source for p in pairs}):  # e.g. eval/pair_accuracy/vadersentiment/tweets
        mine = [float(m > 0) for m, p in zip(rm, pairs, strict=True) if p.source == source]
        metrics |= {f"eval/pair_accuracy/{source}": _mean(mine), f"eval/pairs/{source}": float(len(mine))}
    # how often ONE human rater agrees with a pair's order (VADER's raw ratings): not a ceiling for a model
    # trained on the mean of 10+ raters, whose order a panel reproduces far more often
    single = human_ceiling(rankings)
    if single is not None:
        metrics["eval/single_rater_agreement"] = single
    points = {"held-out responses": (rewards, [judged[t] for t in texts])}
    plot = figures.reward_vs_judge(points, out_dir / "reward_vs_judge.png")
    return metrics, {"reward_vs_judge.png": plot}


def human(model_uri: str) -> dict[str, float]:
    """human/... metrics of this version from the preference store; counts of 0 when it holds none."""
    from alignops.evaluation.human import summarize
    from alignops.feedback.store import Store, database_url

    url = database_url()
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return summarize([], [])  # no store yet: nobody has rated anything (and evaluation creates none)
    store = Store(url)
    try:
        return summarize(store.ratings(model_uri), store.judgments(model_uri))
    finally:
        store.close()


# ---- the stage ------------------------------------------------------------------------------------------------


def run(cfg: PipelineConfig, model_uri: str | None = None, parent_run_id: str | None = None) -> EvaluateResult:
    require_valid(cfg)
    from alignops.evaluation import figures

    ec = cfg.evaluate
    uri = tracking.version_uri(model_uri or ec.model or f"models:/{cfg.tracking.model_prefix}-policy/latest")
    folder = tracking.resolve_model(uri)
    if ner_eval.is_tagger(folder):  # a ner model: entity scores on the ner set (alignops.evaluation.ner)
        run_id, metrics = ner_eval.evaluate_registered(cfg, uri, folder, parent_run_id)
        return EvaluateResult(run_id, uri, None, metrics, None)
    models = ModelCache()
    model = models.get(uri)
    kind = model.meta.kind
    parent = model.meta.parent  # alignops.json; else the registered version's lineage tag
    if parent is None and uri.startswith("models:/"):
        parent = tracking.model_version_tags(uri).get("alignops.parent_model")
    parent = tracking.version_uri(parent) if parent not in (None, "", "none") else None
    generative = kind == CAUSAL_LM
    longest = max(ec.max_new_tokens, ec.answer_tokens)
    if generative and longest >= model.gpt.config.block_size:
        raise EvaluationError(
            f"evaluate.max_new_tokens={ec.max_new_tokens} / answer_tokens={ec.answer_tokens} leave no room for a "
            f"prompt in {uri}'s {model.gpt.config.block_size}-token context: set them below "
            f"{model.gpt.config.block_size // 2}."
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
            if reference.meta.kind == CAUSAL_LM and reference.meta.tokenizer_sha256 == model.meta.tokenizer_sha256:
                reference_uri = parent  # a token-level KL needs the same tokenizer
        reward_uri = _reward_model_uri(cfg)

    with tracking.stage_run("evaluate", cfg, ec, parent_run_id) as stage:
        out_dir = settings.home() / "evaluations" / stage.run_id
        stage.set_tags({
            "alignops.model": uri,
            "alignops.model_kind": kind,
            "alignops.eval_baseline": baseline_uri or "none",
            "alignops.reward_model": reward_uri or "none",
            "alignops.reference_model": reference_uri or "none",
        })  # fmt: skip
        used = ["classification/test"]
        metrics: dict[str, float] = {}
        plots: dict[str, Path] = {}
        samples_path = None

        if kind == "reward":
            used = ["rankings/test"]
            metrics, plots = reward_model_quality(cfg, model, out_dir)
        else:
            scored, predictions = classification(cfg, model)
            metrics |= scored.as_metrics("eval/")
            columns = [*scored.labels, "unparseable"] if generative else scored.labels
            matrix = [row[: len(columns)] for row in scored.confusion]
            title = "held-out classification" + (" (answers parsed)" if generative else "")
            plots["confusion_matrix.png"] = figures.confusion_matrix(
                matrix, scored.labels, columns, out_dir / "confusion_matrix.png", title
            )
            stage.log_artifact(_write_jsonl(predictions, out_dir / "predictions.jsonl"))
        if generative:
            used += ["corpus/test", "sft/test", "eval_prompts/test"]
            metrics |= language_modelling(cfg, model)
            metrics |= instructions(cfg, model)
            found, samples, drawn = alignment(cfg, model, uri, models, baseline_uri, reference_uri, reward_uri, out_dir)
            metrics |= found
            plots |= drawn
            ppo_plot = ppo_history(uri, out_dir)
            if ppo_plot is not None:
                plots["ppo_training.png"] = ppo_plot
            samples_path = _write_jsonl(samples, out_dir / "samples.jsonl")
            stage.log_artifact(samples_path)
            metrics |= human(uri)
        if kind != "reward":  # the classic baselines beside the figures above, and the margin over them
            from alignops.evaluation.baselines import baseline_metrics

            metrics |= baseline_metrics(cfg, model, metrics)

        files = datasets.split_files(cfg.data.data_dir)
        stage.log_datasets({name: (files[name], _md5(files[name])) for name in used}, context="evaluation")
        stage.log_metrics(metrics)
        for plot in plots.values():
            stage.log_artifact(plot, "figures")
        if uri.startswith("models:/"):
            tracking.set_model_version_tags(
                uri, {tracking.EVAL_RUN_TAG: stage.run_id, tracking.EVAL_BASELINE_TAG: baseline_uri or "none"}
            )
        return EvaluateResult(stage.run_id, uri, baseline_uri, metrics, samples_path)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
