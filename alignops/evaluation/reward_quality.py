"""A reward model on held-out rankings (rankings test split): pair accuracy overall and per source, the
longer-wins bar, the single-rater agreement of the rankings that carry one, and how the judge (by the prompt's
language) sees the same pairs.

    metrics, plots = assess_reward_model(cfg, model, out_dir)   # eval/pair_accuracy, ... and reward_vs_judge.png
"""

from __future__ import annotations

from pathlib import Path

from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.stages.training import spread


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def assess_reward_model(cfg: PipelineConfig, model, out_dir: Path) -> tuple[dict[str, float], dict[str, Path]]:
    """The metrics and figures of a LoadedModel reward model; ({}, {}) when the test split holds no pair."""
    from alignops.data.preferences import expand_rankings, length_baseline_accuracy, single_rater_agreement
    from alignops.data.prepare import detect_lang
    from alignops.evaluation import figures
    from alignops.evaluation.judges import judge
    from alignops.evaluation.scoring import text_reward_scores

    rankings = spread(datasets.load_split(cfg.data.data_dir, "rankings", "test"), cfg.evaluate.max_rankings)
    pairs = expand_rankings(rankings, weight_by=None)
    if not pairs:
        return {}, {}
    texts = sorted({(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)})
    rewards = text_reward_scores(model, [p for p, _ in texts], [r for _, r in texts], cfg.evaluate.batch_size)
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
    single = single_rater_agreement(rankings)
    if single is not None:
        metrics["eval/single_rater_agreement"] = single
    points = {"held-out responses": (rewards, [judged[t] for t in texts])}
    plot = figures.reward_vs_judge(points, out_dir / "reward_vs_judge.png")
    return metrics, {"reward_vs_judge.png": plot}
