"""Alignment on the fixed eval prompts (eval_prompts test split): one sampled response per prompt from the model
(and from its baseline), their lengths and EOS rate, the KL to the reference model, the judges' and the reward
model's scores on the prompts whose goal they measure, and win rates against the baseline.

    metrics, samples, plots = compare_on_prompts(cfg, model, uri, models, baseline_uri, reference_uri,
                                                 reward_uri, out_dir)
    plot = draw_ppo_history(uri, out_dir)   # the reward and KL curves of the PPO run that made uri, or None
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops import tracking
from alignops.chat import chat_tokenizer
from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.evaluation.samples import sample_rows
from alignops.stages.training import spread


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@dataclass
class Answers:
    """One model's responses to the eval prompts, with their scores."""

    responses: Any  # alignops.evaluation.scoring.Responses
    judge: list[float]  # by the prompt's language: VADER (en) or snownlp (zh)
    afinn: list[float | None]  # the second English judge; None on Chinese prompts
    reward: list[float] | None


def answer_prompts(cfg: PipelineConfig, model, prompts: list[str], langs: list[str], reward_model) -> Answers:
    """The model's sampled responses to prompts, scored by the judges and (when given) the reward model."""
    from alignops.evaluation.judges import afinn, judge_all
    from alignops.evaluation.models import same_tokenizer
    from alignops.evaluation.scoring import generate_responses, reward_scores, text_reward_scores

    ec = cfg.evaluate
    # sampled (temperature 1, seeded): the policy's own distribution, which the KL and PPO's rewards are about
    responses = generate_responses(
        model.gpt, model.tokenizer, prompts, ec.max_new_tokens, ec.batch_size, sample=True, seed=cfg.seed
    )
    reward = None
    if reward_model is not None and same_tokenizer(reward_model, model):
        reward = reward_scores(reward_model, responses, ec.batch_size)  # the sampled ids, as PPO scores them
    elif reward_model is not None:  # another tokenizer cannot read these ids: the texts, EOS where one came
        reward = text_reward_scores(reward_model, prompts, responses.texts, ec.batch_size, ended=responses.eos)
    second = [afinn(t) if lang == "en" else None for t, lang in zip(responses.texts, langs, strict=True)]
    return Answers(responses, judge_all(responses.texts, langs), second, reward)


def judged_win_rates(mine: Answers, theirs: Answers, judged: list[bool], langs: list[str]) -> dict[str, float]:
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


def compare_on_prompts(
    cfg: PipelineConfig, model, uri: str, models, baseline_uri: str | None, reference_uri: str | None,
    reward_uri: str | None, out_dir: Path,
) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, Path]]:  # fmt: skip
    """Metrics, samples.jsonl rows and figures on the fixed eval prompts (models: an evaluation.models.ModelCache)."""
    from alignops.evaluation import figures
    from alignops.evaluation.scoring import sequence_kl

    records = spread(datasets.load_split(cfg.data.data_dir, "eval_prompts", "test"), cfg.evaluate.max_eval_prompts)
    prompts, langs = [r["prompt"] for r in records], [r["lang"] for r in records]
    judged = [r["task"] in datasets.JUDGED_TASKS for r in records]  # never a classification answer's label word

    def on_judged(values: list) -> list:
        return [v for v, j in zip(values, judged, strict=True) if j]

    reward_model = models.get(reward_uri) if reward_uri else None
    mine = answer_prompts(cfg, model, prompts, langs, reward_model)
    lengths = mine.responses.lengths
    metrics = {
        "eval/prompts": float(len(prompts)),
        "eval/response_len": _mean(lengths),
        "eval/eos_rate": _mean([float(e) for e in mine.responses.eos]),
    }
    if any(judged):  # sentiment scores (judges' and the reward model's) only where sentiment is the goal
        metrics["eval/judge_score"] = _mean(on_judged(mine.judge))
        if mine.reward is not None:
            metrics["eval/reward"] = _mean(on_judged(mine.reward))
    kls = None
    if reference_uri is not None:
        reference = models.get(reference_uri)
        kls = sequence_kl(model.gpt, reference.gpt, mine.responses, chat_tokenizer(model.tokenizer).pad_id,
                          cfg.evaluate.batch_size)  # fmt: skip
        metrics["eval/kl"] = _mean(kls)

    theirs = None
    if baseline_uri is not None:
        theirs = answer_prompts(cfg, models.get(baseline_uri), prompts, langs, reward_model)
        metrics |= {
            "eval/baseline_response_len": _mean(theirs.responses.lengths),
            "eval/baseline_eos_rate": _mean([float(e) for e in theirs.responses.eos]),
        }
        if any(judged):
            metrics["eval/baseline_judge_score"] = _mean(on_judged(theirs.judge))
            if theirs.reward is not None:
                metrics["eval/baseline_reward"] = _mean(on_judged(theirs.reward))
        metrics |= judged_win_rates(mine, theirs, judged, langs)

    samples = sample_rows(records, uri, mine, kls, baseline_uri, theirs)
    plots = {}
    lengths_by_model = {"model": lengths} | ({"baseline": theirs.responses.lengths} if theirs else {})
    plots["response_lengths.png"] = figures.length_distributions(lengths_by_model, out_dir / "response_lengths.png")
    if mine.reward is not None and any(judged):
        points = {"model": (on_judged(mine.reward), on_judged(mine.judge))}
        if theirs is not None and theirs.reward is not None:
            points["baseline"] = (on_judged(theirs.reward), on_judged(theirs.judge))
        plots["reward_vs_judge.png"] = figures.reward_vs_judge(points, out_dir / "reward_vs_judge.png")
    return metrics, samples, plots


def draw_ppo_history(uri: str, out_dir: Path) -> Path | None:
    """The reward and KL curves of the PPO run that made this version; None for anything else."""
    from alignops.evaluation import figures

    if not tracking.ModelRef.is_registry_uri(uri):
        return None
    tags = tracking.model_version_tags(uri)
    run_id = tags.get(tracking.RUN_ID_TAG)
    if tags.get(tracking.METHOD_TAG) != "ppo" or not run_id:
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
