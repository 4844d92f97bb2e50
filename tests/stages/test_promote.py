"""The promotion gate on hand-made evaluations, then end to end on CPU: tiny base models trained for more or
fewer steps, evaluated by the real evaluation stage, promoted, refused and rolled back in a real MLflow registry."""

from __future__ import annotations

import json
import math

import mlflow
import pytest
from typer.testing import CliRunner

from alignops import tracking
from alignops.cli import app
from alignops.config import PipelineConfig, PromotionConfig
from alignops.evaluation.human import HUMAN_WIN_RATE
from alignops.evaluation.metrics import JUDGE_WIN_RATE, win_rate_of
from alignops.stages import evaluate, pretrain, promote
from alignops.stages.promote import FAILED, PASSED, SKIPPED, Evidence, gate

GATE = PromotionConfig(
    max_ppl_increase=0.05, max_f1_drop=0.02, min_judge_win_rate=0.5, min_human_win_rate=0.5, min_human_judgments=30,
    min_decisive_comparisons=30,
)  # fmt: skip


def judged(wins: int, losses: int, ties: int, key: str = JUDGE_WIN_RATE) -> dict[str, float]:
    """The win-rate metrics an evaluation logs for these outcomes, computed by the real arithmetic."""
    return win_rate_of([1] * wins + [0] * losses + [0.5] * ties).as_metrics(key)


CHAMPION = Evidence("models:/m/1", {"eval/ppl": 20.0, "eval/f1": 0.70} | judged(40, 20, 10), run_id="eval-1")
CLEARLY_BETTER = (45, 10, 5)  # 45 of 55 decisive: Wilson [0.69, 0.90]


def challenger(baseline: str | None = "models:/m/1", judge=CLEARLY_BETTER, **metrics: float) -> Evidence:
    values = {"eval/ppl": 20.5, "eval/f1": 0.69} | (judged(*judge) if judge else {})
    values |= {k.replace("__", "/"): v for k, v in metrics.items()}
    return Evidence("models:/m/2", {k: v for k, v in values.items() if v is not None}, baseline, "eval-2")


def by_name(checks: list[promote.Check]) -> dict[str, promote.Check]:
    return {c.name: c for c in checks}


def passes(checks: list[promote.Check]) -> bool:
    return all(c.status != FAILED for c in checks)


def test_gate_passes_within_tolerances_and_reports_each_check() -> None:
    checks = by_name(gate(challenger(), CHAMPION, GATE))
    assert {n: c.status for n, c in checks.items()} == {
        "baseline": PASSED, "perplexity": PASSED, "f1": PASSED, "judge_win_rate": PASSED, "human_win_rate": SKIPPED,
    }  # fmt: skip
    assert checks["perplexity"].value == 20.5 and math.isclose(checks["perplexity"].threshold, 21.0)
    assert checks["f1"].value == 0.69 and math.isclose(checks["f1"].threshold, 0.68)
    assert (checks["judge_win_rate"].value, checks["judge_win_rate"].threshold) == (45 / 55, 0.5)
    assert (
        "on 55 decisive comparisons (45 wins, 10 losses, 5 ties against models:/m/1" in checks["judge_win_rate"].detail
    )


@pytest.mark.parametrize(
    "metrics, failing, fragment",
    [
        ({"eval__ppl": 21.5}, "perplexity", "eval/ppl 21.5 is above 21"),
        ({"eval__ppl": math.nan}, "perplexity", "eval/ppl nan"),
        ({"eval__f1": 0.6}, "f1", "eval/f1 0.6 is below 0.68"),
        ({"judge": (20, 40, 0)}, "judge_win_rate", "eval/win_rate_judge 0.333: lower bound 0.2"),
        ({"human__judgments": 40, **{k.replace("/", "__"): v for k, v in judged(8, 24, 8, HUMAN_WIN_RATE).items()}},
         "human_win_rate", "human/win_rate 0.250: lower bound 0.1"),
    ],
)  # fmt: skip
def test_gate_fails_on_the_check_that_is_out_of_bounds(metrics: dict, failing: str, fragment: str) -> None:
    checks = gate(challenger(**metrics), CHAMPION, GATE)
    assert not passes(checks)
    assert [c.name for c in checks if c.status == FAILED] == [failing]
    assert fragment in by_name(checks)[failing].detail


def test_an_interval_that_spans_the_bar_is_no_evidence() -> None:
    # 36 of 60 decisive: the point estimate 0.60 clears 0.5, its 95% interval [0.47, 0.71] does not
    check = by_name(gate(challenger(judge=(36, 24, 4)), CHAMPION, GATE))["judge_win_rate"]
    assert check.status == FAILED and check.value == 0.6
    assert "lower bound 0.47" in check.detail and "< 0.500 on 60 decisive comparisons" in check.detail
    assert "Wilson [0.47" in check.detail and "bootstrap [" in check.detail
    # the demo's case (issue 14): 0.60 on 24 prompts, [0.41, 0.77]: too few decisive comparisons, too wide
    demo = by_name(gate(challenger(judge=(12, 8, 4)), None, GATE))["judge_win_rate"]
    assert demo.status == FAILED and "20 decisive comparisons" in demo.detail and "need at least 30" in demo.detail


def test_an_unchanged_model_ties_everything_and_is_not_promoted() -> None:
    same = gate(challenger(judge=(0, 0, 24)), None, GATE)  # no champion yet: only the win rate decides
    check = by_name(same)["judge_win_rate"]
    assert not passes(same) and check.status == FAILED
    assert "0 decisive comparisons (0 wins, 0 losses, 24 ties" in check.detail
    assert "identical answers are no evidence" in check.detail and "evaluate.max_eval_prompts" in check.detail


def test_a_clear_win_needs_enough_decisive_comparisons() -> None:
    # 10 wins, no loss: Wilson [0.72, 1.0] clears 0.5, but 10 comparisons are fewer than the 30 asked
    check = by_name(gate(challenger(judge=(10, 0, 2)), CHAMPION, GATE))["judge_win_rate"]
    assert check.status == FAILED and "need at least 30 (promotion.min_decisive_comparisons)" in check.detail
    assert by_name(gate(challenger(judge=(30, 0, 2)), CHAMPION, GATE))["judge_win_rate"].status == PASSED


def test_an_evaluation_without_win_loss_tie_counts_must_be_redone() -> None:
    old = challenger(judge=None, eval__win_rate_judge=0.7)  # logged before the counts were
    check = by_name(gate(old, CHAMPION, GATE))["judge_win_rate"]
    assert check.status == FAILED and "re-run `alignops evaluate --model models:/m/2`" in check.detail


def test_human_win_rates_are_held_to_the_same_evidence() -> None:
    def human(wins: int, losses: int, ties: int, n: int) -> dict:
        return {"human__judgments": n} | {
            k.replace("/", "__"): v for k, v in judged(wins, losses, ties, HUMAN_WIN_RATE).items()
        }

    few = by_name(gate(challenger(**human(2, 27, 0, 29)), CHAMPION, GATE))["human_win_rate"]
    assert few.status == SKIPPED and "29 human pairwise judgments" in few.detail  # nobody asked enough people yet
    assert by_name(gate(challenger(**human(32, 3, 5, 40)), CHAMPION, GATE))["human_win_rate"].status == PASSED
    ties = by_name(gate(challenger(**human(1, 0, 39, 40)), CHAMPION, GATE))["human_win_rate"]
    assert ties.status == FAILED and "1 decisive comparisons" in ties.detail
    close = by_name(gate(challenger(**human(20, 15, 5, 40)), CHAMPION, GATE))["human_win_rate"]
    assert close.status == FAILED and "lower bound" in close.detail


def test_win_rates_against_another_model_than_the_champion_are_stale() -> None:
    checks = gate(challenger(baseline="models:/m/0"), CHAMPION, GATE)
    assert not passes(checks)
    stale = by_name(checks)["baseline"]
    assert stale.status == FAILED
    assert "measured against models:/m/0, but the champion is models:/m/1" in stale.detail
    assert "re-run `alignops evaluate --model models:/m/2`" in stale.detail
    assert by_name(gate(challenger(baseline=None), CHAMPION, GATE))["baseline"].status == FAILED


def test_first_champion_needs_only_the_absolute_checks() -> None:
    # nothing to compare with: relative checks are skipped, and with no baseline there is no win rate either
    alone = gate(challenger(baseline=None, judge=None), None, GATE)
    assert passes(alone) and {c.status for c in alone} == {SKIPPED}
    # win rates against the parent still have to clear the bar
    against_parent = by_name(gate(challenger(baseline="models:/base/1", judge=(10, 40, 0)), None, GATE))
    assert against_parent["judge_win_rate"].status == FAILED
    assert against_parent["perplexity"].status == SKIPPED and "no champion yet" in against_parent["perplexity"].detail
    assert passes(gate(challenger(baseline="models:/base/1"), None, GATE))  # a clear win over the parent


def test_missing_evidence_is_skipped_but_a_champion_is_never_replaced_on_none() -> None:
    some = by_name(gate(challenger(eval__f1=None), CHAMPION, GATE))
    assert some["f1"].status == SKIPPED and "evaluation of models:/m/2 has none" in some["f1"].detail
    never_evaluated = Evidence("models:/m/1", {})
    nothing = gate(challenger(judge=None), never_evaluated, GATE)
    assert not passes(nothing)
    assert "alignops evaluate --model models:/m/1" in by_name(nothing)["perplexity"].detail
    assert by_name(nothing)["evidence"].status == FAILED


# ---- end to end ------------------------------------------------------------------------------------------------


def pretrained(cfg: PipelineConfig, steps: int) -> str:
    """A base model pretrained for `steps` optimizer steps and registered; returns its URI."""
    warmup = min(cfg.pretrain.warmup_steps, steps // 2)
    section = cfg.pretrain.model_copy(update={"max_steps": steps, "val_every_n_steps": steps, "warmup_steps": warmup})
    return pretrain.run(cfg.model_copy(update={"pretrain": section})).model_uri


def evaluated(cfg: PipelineConfig, uri: str) -> str:
    evaluate.run(cfg, model_uri=uri)
    return uri


def with_gate(cfg: PipelineConfig, **changes) -> PipelineConfig:
    # and a smaller evaluation than the tiny preset's: the gate needs its figures, not their precision
    smaller = {"max_lm_tokens": 2000, "max_classification_examples": 16, "max_instruction_examples": 16,
               "max_eval_prompts": 8}  # fmt: skip
    return cfg.model_copy(
        update={
            "promotion": cfg.promotion.model_copy(update=changes),
            "evaluate": cfg.evaluate.model_copy(update=smaller),
        }
    )


def test_promote_refuse_and_roll_back(built: PipelineConfig) -> None:
    client = mlflow.MlflowClient(tracking.tracking_uri())
    # Perplexity decides: no rise at all over the champion is allowed. Base models are judged on a handful of
    # prompts, far from the evidence a win rate needs, so the judge's bars are off here (both at 0); the gate
    # tests above and the planted models below cover it.
    cfg = with_gate(built, max_ppl_increase=0.0, min_judge_win_rate=0.0, min_decisive_comparisons=0)

    first = evaluated(cfg, pretrained(cfg, 10))
    assert first == "models:/alignops-base/1"
    result = promote.run(cfg, first)
    assert result.passed and (result.champion_before, result.champion_after) == (None, first)
    assert {c.status for c in result.checks} == {SKIPPED}  # the first champion: nothing to compare with
    assert tracking.alias_uri("alignops-base", "champion") == first
    assert tracking.alias_uri("alignops-base", "challenger") is None

    # a better-trained challenger, evaluated against the champion: lower perplexity, promoted
    better = pretrained(cfg, 30)
    with pytest.raises(
        promote.PromotionError, match=f"has not been evaluated: run `alignops evaluate --model {better}`"
    ):
        promote.run(cfg, better)
    evaluated(cfg, better)
    assert tracking.evaluation_of(better)["baseline_uri"] == first
    result = promote.run(cfg, better)
    checks = by_name(result.checks)
    assert result.passed, result.reasons
    assert checks["baseline"].status == PASSED
    assert checks["perplexity"].status == PASSED and checks["perplexity"].value < checks["perplexity"].threshold
    assert tracking.alias_uri("alignops-base", "champion") == better
    assert tracking.alias_uri("alignops-base", "challenger") is None
    assert json.loads(tracking.registered_model_tags("alignops-base")[tracking.CHAMPION_HISTORY_TAG]) == ["1"]
    version = client.get_model_version("alignops-base", "2")
    assert version.tags[tracking.PROMOTION_TAG] == "passed"
    run = client.get_run(version.tags[tracking.PROMOTION_RUN_TAG])
    assert run.info.run_name == "promote" and run.data.metrics["promote/passed"] == 1.0
    assert run.data.params["challenger"] == better and run.data.params["max_ppl_increase"] == "0.0"
    evidence = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/promotion.json")
    assert evidence["champion"]["uri"] == first and evidence["champion_after"] == better
    assert evidence["challenger"]["metrics"]["eval/ppl"] == checks["perplexity"].value

    # an under-trained challenger: higher perplexity than the champion, refused through the command line
    worse = evaluated(cfg, pretrained(cfg, 4))
    outcome = CliRunner().invoke(
        app, ["promote", "--model", worse, "-p", "tiny", "--set", "promotion.max_ppl_increase=0.0",
              "--set", "promotion.min_judge_win_rate=0.0", "--set", "promotion.min_decisive_comparisons=0"],
    )  # fmt: skip
    assert outcome.exit_code == 1, outcome.output
    assert "failed  perplexity" in outcome.output and "not promoted" in outcome.output
    assert tracking.alias_uri("alignops-base", "champion") == better
    assert tracking.alias_uri("alignops-base", "challenger") == worse
    tag = client.get_model_version("alignops-base", "3").tags[tracking.PROMOTION_TAG]
    assert tag.startswith("failed: eval/ppl") and "is above" in tag

    # rollback: the previous champion is back, and the challenger's evidence (against version 2) is now stale
    outcome = CliRunner().invoke(app, ["rollback", "--name", "alignops-base", "-p", "tiny"])
    assert outcome.exit_code == 0, outcome.output
    assert tracking.alias_uri("alignops-base", "champion") == first
    rollbacks = client.search_runs([run.info.experiment_id], "attributes.run_name = 'rollback'")
    assert [(r.data.params["champion_before"], r.data.params["champion_after"]) for r in rollbacks] == [(better, first)]
    assert client.get_model_version("alignops-base", "2").tags[tracking.PROMOTION_TAG].startswith("rolled back")
    stale = promote.run(cfg, worse)
    assert not stale.passed and by_name(stale.checks)["baseline"].status == FAILED
    assert "re-run `alignops evaluate --model models:/alignops-base/3`" in stale.reasons[0]
    assert tracking.alias_uri("alignops-base", "champion") == first

    with pytest.raises(promote.PromotionError, match="no earlier champion"):
        promote.rollback(cfg, "alignops-base")
    with pytest.raises(promote.PromotionError, match="already the champion"):
        promote.run(cfg, "models:/alignops-base@champion")


PLANTED = "Happy!"  # short, so a tiny model learns it in a few steps; positive to VADER and AFINN


@pytest.mark.slow  # about 2.5 min on a busy 2-core machine: SFT for 200 steps, 91 prompts answered twice
def test_a_planted_clearly_better_model_is_promoted_on_evidence(built: PipelineConfig, tmp_path) -> None:
    """SFT on answers that are always warmly positive, against its parent (a base model that writes noise): the
    judges' goal, met on every judged prompt, so the win rate's lower bound clears 0.5 on enough comparisons."""
    import shutil

    from alignops.data import datasets
    from alignops.stages import sft

    base = pretrained(built, 40)
    planted_data = shutil.copytree(built.data.data_dir, tmp_path / "planted-data")
    train = datasets.split_files(planted_data)["sft/train"]
    rows = [json.loads(line) | {"response": PLANTED} for line in train.read_text(encoding="utf-8").splitlines()]
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    section = built.sft.model_copy(update={"max_steps": 400, "lr": 0.01, "base_model": base})
    planted = sft.run(
        built.model_copy(update={"sft": section, "data": built.data.model_copy(update={"data_dir": planted_data})})
    ).model_uri
    # every eval prompt of the fixture data: about half are judged (the rest ask for a sentiment label)
    cfg = with_gate(built).model_copy(
        update={"evaluate": built.evaluate.model_copy(update={"max_eval_prompts": 300, "max_lm_tokens": 2000})}
    )
    evaluation = evaluate.run(cfg, model_uri=planted)
    metrics = evaluation.metrics
    said = [json.loads(line)["completion"] for line in evaluation.samples_path.read_text().splitlines()[:6]]
    eval_set = datasets.load_split(built.data.data_dir, "eval_prompts", "test")
    assert metrics["eval/prompts"] == len(eval_set)  # every one, judged where its task is one the judges measure
    assert metrics["eval/judged_prompts"] == sum(r["task"] in datasets.JUDGED_TASKS for r in eval_set) >= 30
    result = promote.run(cfg, planted)
    judge = by_name(result.checks)["judge_win_rate"]
    assert result.passed and judge.status == PASSED, (result.reasons, said)
    decisive = metrics["eval/win_rate_judge_wins"] + metrics["eval/win_rate_judge_losses"]
    assert decisive >= cfg.promotion.min_decisive_comparisons == 30
    assert min(metrics["eval/win_rate_judge_low"], metrics["eval/win_rate_judge_boot_low"]) >= 0.5
    assert metrics["eval/win_rate_afinn"] > 0.5  # the second judge agrees
    assert tracking.alias_uri("alignops-sft", "champion") == planted
