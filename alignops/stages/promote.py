"""Promotion through a gate, and rollback: a registered version becomes its model's `champion` only when its
evaluation holds up against the champion's.

    result = run(cfg, "models:/alignops-policy/3")    # or: alignops promote --model models:/alignops-policy/3
    rollback(cfg, "alignops-policy")                  # or: alignops rollback --name alignops-policy

Aliases: `challenger` marks the version under review and stays on it when it fails; `champion` is the version
in service (`alignops serve --model models:/<name>@champion`). Each decision is an MLflow run ("promote", with
the evidence as promotion.json) and a tag on the challenger (alignops.promotion = passed | failed: reasons).
The registered model's tag alignops.champion_history lists the earlier champions, newest last: `rollback`
steps back through it.

The gate (`gate`) is a pure function of the two evaluations (alignops evaluate) and PromotionConfig. A check
without evidence (no champion yet, too few human judgments) is reported as skipped, never as passed; win rates
measured against another model than the current champion are stale and fail the gate. With no champion yet,
only the absolute checks (win rates against the evaluation's baseline, the model's parent) apply.

A win rate passes on evidence only: at least promotion.min_decisive_comparisons comparisons that were not ties
(identical answers are no evidence, so an unchanged model, which ties everything, fails), and the lower bounds
of both 95% intervals (Wilson, and the bootstrap over prompts) at or above the bar. A challenger without enough
evidence stays challenger, and the failed check says what is missing, e.g. "eval/win_rate_judge: 0 decisive
comparisons (0 wins, 0 losses, 7 ties against ...); need at least 30 ..." or "eval/win_rate_judge 0.600: lower
bound 0.473 < 0.500 on 60 decisive comparisons (...)".
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from alignops import tracking
from alignops.config import PipelineConfig, PromotionConfig
from alignops.errors import ModelError
from alignops.evaluation.human import HUMAN_WIN_RATE
from alignops.evaluation.metrics import JUDGE_WIN_RATE

CHAMPION, CHALLENGER = "champion", "challenger"

# The evaluation's metrics the gate reads (alignops/stages/evaluate.py logs them)
PPL, F1 = "eval/ppl", "eval/f1"
HUMAN_JUDGMENTS = "human/judgments"

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


class PromotionError(ModelError, RuntimeError):
    """A promotion or rollback that cannot be decided (nothing evaluated, nothing to roll back to); the message
    says what to run."""


@dataclass(frozen=True)
class Evidence:
    """One side of the comparison: a registered version, its evaluation's metrics, and the model its win rates
    were measured against."""

    uri: str  # models:/<name>/<version>
    metrics: dict[str, float]
    baseline_uri: str | None = None
    run_id: str | None = None  # the evaluation run


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # passed, failed or skipped (no evidence: reported, never counted as passed)
    value: float | None
    threshold: float | None
    detail: str


@dataclass(frozen=True)
class PromotionResult:
    passed: bool
    checks: list[Check]
    champion_before: str | None  # models:/<name>/<version>, None when there was none
    champion_after: str | None
    run_id: str

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if c.status == FAILED]


@dataclass(frozen=True)
class RollbackResult:
    champion_before: str
    champion_after: str
    run_id: str


def gate(challenger: Evidence, champion: Evidence | None, cfg: PromotionConfig) -> list[Check]:
    """The named checks of the challenger against the champion (None: there is none yet). It passes when no
    check failed."""
    checks = [
        _baseline(challenger, champion),
        _relative("perplexity", PPL, challenger, champion, lambda c: c * (1 + cfg.max_ppl_increase), higher=False),
        _relative("f1", F1, challenger, champion, lambda c: c - cfg.max_f1_drop, higher=True),
        _judge(challenger, champion, cfg),
        _human(challenger, cfg),
    ]
    if champion is not None and all(c.status == SKIPPED for c in checks[1:]):
        # nothing compared the two: a challenger does not replace a champion on no evidence at all
        checks.append(
            Check(
                "evidence",
                FAILED,
                None,
                None,
                f"no check had evidence against the champion {champion.uri}: "
                f"evaluate both (alignops evaluate --model ...) and promote again",
            )  # fmt: skip
        )
    return checks


def _baseline(challenger: Evidence, champion: Evidence | None) -> Check:
    against = challenger.baseline_uri or "no baseline"
    if champion is None:
        return Check("baseline", SKIPPED, None, None, f"no champion yet; win rates were measured against {against}")
    if challenger.baseline_uri == champion.uri:
        return Check("baseline", PASSED, None, None, f"win rates were measured against the champion {champion.uri}")
    return Check(
        "baseline", FAILED, None, None,
        f"stale evidence: {challenger.uri}'s win rates were measured against {against}, but the champion is "
        f"{champion.uri}; re-run `alignops evaluate --model {challenger.uri}` and promote again",
    )  # fmt: skip


def _relative(name: str, key: str, challenger: Evidence, champion: Evidence | None, bound, higher: bool) -> Check:
    """value against bound(champion's value): at least it when higher is better, at most it otherwise."""
    value = challenger.metrics.get(key)
    if champion is None:
        return Check(name, SKIPPED, value, None, f"{key}: no champion yet to compare with")
    if champion.run_id is None:
        detail = f"{key}: the champion {champion.uri} was never evaluated (alignops evaluate --model {champion.uri})"
        return Check(name, SKIPPED, value, None, detail)
    if value is None or key not in champion.metrics:
        missing = challenger.uri if value is None else f"the champion {champion.uri}"
        return Check(name, SKIPPED, value, None, f"{key}: the evaluation of {missing} has none")
    theirs = champion.metrics[key]
    threshold = bound(theirs)
    ok = math.isfinite(value) and (value >= threshold if higher else value <= threshold)
    word = ("at least" if higher else "at most") if ok else ("below" if higher else "above")
    detail = f"{key} {value:.4g} is {word} {threshold:.4g} (champion {theirs:.4g})"
    return Check(name, PASSED if ok else FAILED, value, threshold, detail)


def _judge(challenger: Evidence, champion: Evidence | None, cfg: PromotionConfig) -> Check:
    if JUDGE_WIN_RATE not in challenger.metrics and f"{JUDGE_WIN_RATE}_wins" not in challenger.metrics:
        why = "the evaluation had no baseline" if challenger.baseline_uri is None else "the evaluation has none"
        return Check("judge_win_rate", SKIPPED, None, cfg.min_judge_win_rate, f"{JUDGE_WIN_RATE}: {why}")
    against = f"against {challenger.baseline_uri}"
    return _on_evidence("judge_win_rate", JUDGE_WIN_RATE, challenger, cfg.min_judge_win_rate, cfg, against)


def _human(challenger: Evidence, cfg: PromotionConfig) -> Check:
    n = int(challenger.metrics.get(HUMAN_JUDGMENTS, 0))
    value, threshold = challenger.metrics.get(HUMAN_WIN_RATE), cfg.min_human_win_rate
    if n < cfg.min_human_judgments:
        detail = f"{n} human pairwise judgments, fewer than the {cfg.min_human_judgments} this check needs"
        return Check("human_win_rate", SKIPPED, value, threshold, detail)
    return _on_evidence("human_win_rate", HUMAN_WIN_RATE, challenger, threshold, cfg, f"over {n} human judgments")


def _on_evidence(
    name: str, key: str, challenger: Evidence, threshold: float, cfg: PromotionConfig, against: str
) -> Check:
    """A win-rate check on evidence: enough decisive comparisons (ties, such as identical answers, are none),
    and the lower bounds of both 95% intervals (Wilson; bootstrap over prompts) at least `threshold`."""
    m = challenger.metrics
    counts = [m.get(f"{key}_{k}") for k in ("wins", "losses", "ties")]
    if None in counts:
        detail = (f"{key}: the evaluation of {challenger.uri} has no win/loss/tie counts (made before they were "
                  f"logged): re-run `alignops evaluate --model {challenger.uri}` and promote again")  # fmt: skip
        return Check(name, FAILED, m.get(key), threshold, detail)
    wins, losses, ties = (int(c) for c in counts)
    decisive, value = wins + losses, m.get(key)
    tally = f"{wins} wins, {losses} losses, {ties} ties {against}"
    if cfg.min_decisive_comparisons == 0 and threshold == 0:  # both bars off: nothing is asked of the evidence
        return Check(
            name, PASSED, value, threshold, f"{key}: bars off (no decisive comparisons asked, bound 0; {tally})"
        )
    if decisive < max(cfg.min_decisive_comparisons, 1):
        detail = (f"{key}: {decisive} decisive comparisons ({tally}); need at least {cfg.min_decisive_comparisons} "
                  f"(promotion.min_decisive_comparisons): identical answers are no evidence; compare on more "
                  f"prompts (evaluate.max_eval_prompts) or collect more judgments")  # fmt: skip
        return Check(name, FAILED, value, threshold, detail)
    lower = min(m[f"{key}_low"], m[f"{key}_boot_low"])
    interval = (f"Wilson [{m[f'{key}_low']:.3f}, {m[f'{key}_high']:.3f}], "
                f"bootstrap [{m[f'{key}_boot_low']:.3f}, {m[f'{key}_boot_high']:.3f}]")  # fmt: skip
    if lower >= threshold:
        detail = f"{key} {value:.3f}: lower bound {lower:.3f} >= {threshold:.3f} on {decisive} decisive comparisons"
        return Check(name, PASSED, value, threshold, f"{detail} ({tally}; {interval})")
    detail = (f"{key} {value:.3f}: lower bound {lower:.3f} < {threshold:.3f} on {decisive} decisive comparisons "
              f"({tally}; {interval}); need the lower bound >= {threshold:.3f}: a clearer win, or more prompts "
              f"for a narrower interval")  # fmt: skip
    return Check(name, FAILED, value, threshold, detail)


def run(cfg: PipelineConfig, challenger_uri: str, parent_run_id: str | None = None) -> PromotionResult:
    """Give the version `challenger_uri` names the `challenger` alias, gate it against the current champion, and
    move `champion` to it if it passes. The decision is logged either way."""
    uri = tracking.version_uri(challenger_uri)
    if not tracking.ModelRef.is_registry_uri(uri):
        raise PromotionError(f"{challenger_uri} is not a registered version: promote models:/<name>/<version>.")
    tracking.model_version_tags(uri)  # FileNotFoundError naming the URI when no such version is registered
    name = registered_name(uri)
    champion_uri = tracking.alias_uri(name, CHAMPION)
    if champion_uri == uri:
        raise PromotionError(f"{uri} is already the champion of {name}; nothing to promote.")
    evaluation = tracking.evaluation_of(uri)
    if evaluation is None:
        raise PromotionError(f"{uri} has not been evaluated: run `alignops evaluate --model {uri}`, then promote it.")
    challenger = Evidence(uri, evaluation["metrics"], evaluation["baseline_uri"], evaluation["run_id"])
    champion = None
    if champion_uri is not None:
        theirs = tracking.evaluation_of(champion_uri) or {"metrics": {}, "baseline_uri": None, "run_id": None}
        champion = Evidence(champion_uri, theirs["metrics"], theirs["baseline_uri"], theirs["run_id"])

    tracking.set_alias(uri, CHALLENGER)
    checks = gate(challenger, champion, cfg.promotion)
    passed = all(c.status != FAILED for c in checks)
    after = uri if passed else champion_uri
    with tracking.stage_run("promote", cfg, cfg.promotion, parent_run_id) as stage:
        stage.log_params({"challenger": uri, "champion_before": champion_uri or "none"})
        stage.set_tags({tracking.CHALLENGER_TAG: uri, tracking.DECISION_TAG: PASSED if passed else FAILED})
        metrics = {"promote/passed": float(passed)}
        for c in checks:
            if c.value is not None and math.isfinite(c.value):
                metrics[f"promote/{c.name}"] = c.value
            if c.threshold is not None and math.isfinite(c.threshold):
                metrics[f"promote/{c.name}_threshold"] = c.threshold
        stage.log_metrics(metrics)
        evidence = {
            "challenger": asdict(challenger),
            "champion": asdict(champion) if champion else None,
            "gate": cfg.promotion.model_dump(mode="json"),
            "checks": [asdict(c) for c in checks],
            "passed": passed,
            "champion_before": champion_uri,
            "champion_after": after,
        }
        stage.log_dict(evidence, "promotion.json")
        if passed:
            if champion_uri is not None:
                _push_history(name, champion_uri)
            tracking.set_alias(uri, CHAMPION)
            tracking.delete_alias(name, CHALLENGER)
        reasons = [c.detail for c in checks if c.status == FAILED]
        decision = PASSED if passed else f"{FAILED}: " + "; ".join(reasons)
        tracking.set_model_version_tags(
            uri, {tracking.PROMOTION_TAG: decision[:4000], tracking.PROMOTION_RUN_TAG: stage.run_id}
        )
    return PromotionResult(passed, checks, champion_uri, after, stage.run_id)


def rollback(cfg: PipelineConfig, name: str, parent_run_id: str | None = None) -> RollbackResult:
    """Move `champion` of registered model `name` back to the previous champion; logged as a "rollback" run."""
    history = _history(name)  # FileNotFoundError when there is no registered model of that name
    current = tracking.alias_uri(name, CHAMPION)
    if current is None:
        raise PromotionError(f"{name} has no champion: nothing to roll back. Promote one: alignops promote --model ...")
    if not history:
        raise PromotionError(f"{name} has no earlier champion to roll back to: {current} is its first.")
    previous = tracking.ModelRef.of(name, history[-1]).uri
    with tracking.stage_run("rollback", cfg, None, parent_run_id) as stage:
        stage.log_params({"name": name, "champion_before": current, "champion_after": previous})
        tracking.set_alias(previous, CHAMPION)
        if tracking.alias_uri(name, CHALLENGER) == previous:  # a version is never champion and challenger at once
            tracking.delete_alias(name, CHALLENGER)
        tracking.set_registered_model_tags(name, {tracking.CHAMPION_HISTORY_TAG: json.dumps(history[:-1])})
        tracking.set_model_version_tags(
            current,
            {
                tracking.PROMOTION_TAG: f"rolled back: {previous} is champion again",
                tracking.PROMOTION_RUN_TAG: stage.run_id,
            },
        )
    return RollbackResult(current, previous, stage.run_id)


def is_champion(uri: str) -> bool:
    """Whether this exact version already holds the champion alias (then there is nothing to promote it over)."""
    version = tracking.version_uri(uri)
    return tracking.alias_uri(registered_name(version), CHAMPION) == version


def registered_name(uri: str) -> str:
    """models:/<name>/<version> -> <name>."""
    return tracking.ModelRef.parse(uri).name


def _history(name: str) -> list[str]:
    return json.loads(tracking.registered_model_tags(name).get(tracking.CHAMPION_HISTORY_TAG, "[]"))


def _push_history(name: str, champion_uri: str) -> None:
    # the last 100 champions: enough to step back through, and well inside MLflow's limit on a tag's length
    history = [*_history(name), champion_uri.rsplit("/", 1)[1]][-100:]
    tracking.set_registered_model_tags(name, {tracking.CHAMPION_HISTORY_TAG: json.dumps(history)})
