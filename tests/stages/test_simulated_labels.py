"""The simulated labeler (stages.simulated_labels): a model of the VADER raters that ranks the SFT policy's own
continuations for the sentiment experiment's reward model, and says in every record that it is a simulation."""

from __future__ import annotations

import mlflow
import pytest

from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.errors import ModelError
from alignops.stages import pretrain, sentiment, sft
from alignops.stages.simulated_labels import (
    LABELER,
    SOURCE,
    assign_splits,
    fit_labeler,
    label,
    labeler_accuracy,
    mark_negation,
    ranking_of,
    rankings,
)


def test_ranking_of_puts_the_best_first_and_ties_together() -> None:
    assert ranking_of([0.1, 0.5, 0.1, -2.0]) == [1, [0, 2], 3]
    assert ranking_of([1.0, 1.0]) == [[0, 1]]


def test_ranking_of_ties_close_calls_within_the_margin() -> None:
    """A labeler who cannot tell two continuations apart ties them: a new group starts only at a gap wider than
    the margin, so a chain of close calls is one group."""
    scores = [0.1, 1.2, 0.4, -2.0]
    assert ranking_of(scores) == [1, 2, 0, 3]
    assert ranking_of(scores, tie_margin=0.5) == [1, [0, 2], 3]  # 0.4 - 0.1 within it, 1.2 - 0.4 not
    assert ranking_of(scores, tie_margin=0.8) == [[0, 1, 2], 3]  # 1.2 -> 0.4 -> 0.1: a chain of close calls
    assert ranking_of(scores, tie_margin=5.0) == [[0, 1, 2, 3]]


def test_the_labeler_learns_the_raters_not_a_lexicon() -> None:
    """Fit on rated texts only (a ranking without ratings teaches it nothing); it scores unseen texts by the words
    the raters liked, and refuses rankings that carry no ratings."""
    good = ["a wonderful lovely film", "lovely and wonderful", "what a wonderful day", "lovely lovely people"]
    bad = ["a dreadful awful film", "awful and dreadful", "what a dreadful day", "awful awful people"]
    records = [
        {"responses": good[:2] + bad[:2], "ratings": [[3, 4], [3, 3], [-3, -4], [-3, -3]]},
        {"responses": good[2:] + bad[2:], "ratings": [[4, 4], [3, 2], [-4, -4], [-2, -3]]},
        {"responses": ["zzz dreadful wonderful"], "ratings": None},  # label-derived: no raters
    ]
    labeler = fit_labeler(records)
    wonderful, dreadful = labeler(["a wonderful lovely evening", "a dreadful awful evening"])
    assert wonderful > 0 > dreadful
    held_out = [{"prompt": "p", "responses": ["a lovely day", "an awful day", "a dreadful one"], "ranking": [0, [1, 2]],
                 "source": "vadersentiment/tweets"}]  # fmt: skip
    assert labeler_accuracy(labeler, held_out) == 1.0  # lovely over awful, lovely over dreadful
    assert labeler_accuracy(lambda texts: [0.0] * len(texts), held_out) == 0.5  # a tie is half right
    assert labeler_accuracy(labeler, []) is None
    with pytest.raises(ValueError, match="needs rated texts.*hold 0"):
        fit_labeler([{"responses": ["a", "b"], "ratings": None}])


def test_the_labeler_reads_a_negated_word_apart_from_the_word() -> None:
    """Raters who score "bad" low and "not bad" high: the labeler marks the words after a negator (up to the next
    punctuation), so a bag of n-grams can tell the two apart (unmarked, "not bad" is "not" plus "bad")."""
    assert mark_negation("It is not a bad thing. It is fine, never dull!") == (
        "It is not neg_a neg_bad neg_thing . It is fine , never neg_dull !"
    )
    assert mark_negation("I didn't like it, no") == "I didn't neg_like neg_it , no"
    rated = {
        "it was good": 3, "so good today": 3, "a good film": 3, "it was bad": -3, "so bad today": -3,
        "a bad film": -3, "it was not good": -2, "not good today": -2, "not a good film": -2, "it was not bad": 2,
        "not bad today": 2, "not a bad film": 2,
    }  # fmt: skip
    labeler = fit_labeler([{"responses": list(rated), "ratings": [[v] for v in rated.values()]}])
    texts = ["the good song", "the song is not good", "the bad song", "not bad, the song"]
    good, not_good, bad, not_bad = labeler(texts)
    # measured: 2.13, -0.77, -2.24, 0.91; unmarked 0.71, 0.56, -0.72, -0.34 ("not good" read as good, "not bad" as bad)
    assert not_good < 0 < good and bad < 0 < not_bad, (good, not_good, bad, not_bad)


def test_rankings_group_k_continuations_per_prompt_and_skip_repeats() -> None:
    labeler = lambda texts: [float(len(t)) for t in texts]  # noqa: E731  longer is better, for the test
    out = rankings(["p", "q", "r"], ["ab", "abc", "x", "x", "long one", ""], 2, labeler)
    assert [r["prompt"] for r in out] == ["p"]  # q's two are the same; r has an empty one
    assert out[0]["responses"] == ["ab", "abc"] and out[0]["ranking"] == [1, 0]
    assert (out[0]["annotator"], out[0]["source"], out[0]["derived"], out[0]["agreement"]) == (
        LABELER,
        SOURCE,
        True,
        None,
    )
    # within the tie margin: "ab" and "abc" tie, so p has nothing to compare and is left out; "abcd" is 2 longer
    assert rankings(["p"], ["ab", "abc"], 2, labeler, tie_margin=1.0) == []
    assert rankings(["p"], ["ab", "abcd"], 2, labeler, tie_margin=1.0)[0]["ranking"] == [1, 0]


def test_held_out_rankings_never_share_a_continuation_with_training() -> None:
    def ranking(prompt: str, *texts: str) -> dict:
        return {"prompt": prompt, "responses": list(texts)}

    train = [ranking("p", "a", "b")]
    held = [ranking("q", "b", "c"), ranking("r", "d", "e"), ranking("s", "f", "z"), ranking("t", "g", "h")]
    out = assign_splits(train, held, [ranking("w", "z", "y")], "salt")
    assert out["train"] == train
    assert sorted(r["prompt"] for r in out["val"] + out["test"]) == ["r", "t"]  # q shares "b", s shares "z"
    many = assign_splits([], [ranking(str(i), f"{i}a", f"{i}b") for i in range(40)], [], "salt")
    assert len(many["val"]) == len(many["test"]) == 20  # halved, in content-hash order
    assert many == assign_splits([], [ranking(str(i), f"{i}a", f"{i}b") for i in reversed(range(40))], [], "salt")


def test_label_writes_validated_versioned_rankings_of_the_policys_continuations(built: PipelineConfig) -> None:
    pretrain.run(built)
    sft_uri = sft.run(built).model_uri
    cfg = built.model_copy(update={"experiment": built.experiment.model_copy(update={
        "simulated_labels": 6, "labels_per_prompt": 3, "max_new_tokens": 5, "batch_size": 4,
    })})  # fmt: skip
    before = {s: len(datasets.load_split(cfg.data.data_dir, "rankings", s)) for s in datasets.SPLITS}
    dvc_before = (cfg.data.data_dir.parent / "data.dvc").read_text(encoding="utf-8")
    counts = label(cfg, sft_uri)
    assert counts["train"] == 6 and counts["val"] >= 1 and counts["test"] >= 1  # of max(6 // 8, 4) val prefixes
    train_prompts = {r["prompt"] for r in datasets.load_split(cfg.data.data_dir, "rollout_prompts", "train")}
    for split in datasets.SPLITS:
        records = datasets.load_split(cfg.data.data_dir, "rankings", split)
        mine = [r for r in records if r["source"] == SOURCE]
        assert len(mine) == counts[split] and len(records) == before[split] + counts[split]
        for r in mine:
            assert r["annotator"] == LABELER and len(r["responses"]) == 3
            assert (r["prompt"] in train_prompts) == (split == "train")  # held-out prefixes never train it
    assert (cfg.data.data_dir.parent / "data.dvc").read_text(encoding="utf-8") != dvc_before  # a new data version
    runs = mlflow.search_runs(experiment_names=[cfg.tracking.experiment], filter_string="tags.labeler != ''")
    assert len(runs) == 1 and runs.iloc[0]["metrics.labels/train"] == 6

    again = label(cfg, sft_uri)  # replaces its earlier rankings, never adds beside them
    after = {s: len(datasets.load_split(cfg.data.data_dir, "rankings", s)) for s in datasets.SPLITS}
    assert after == {s: before[s] + again[s] for s in datasets.SPLITS}
    # experiment.labeler_tie_margin reaches the labeler: wider than any two ratings, every prefix ties, none is kept
    tied = cfg.model_copy(update={"experiment": cfg.experiment.model_copy(update={"labeler_tie_margin": 100.0})})
    with pytest.raises(ModelError, match="made 0 train, 0 val, 0 test rankings"):
        label(tied, sft_uri)
    assert {s: len(datasets.load_split(cfg.data.data_dir, "rankings", s)) for s in datasets.SPLITS} == after
    # and the experiment's reward model then learns from them alone
    assert sentiment.reward_config(cfg, sft_uri).reward.sources == [SOURCE]
    assert sentiment.reward_config(built, sft_uri).reward.sources == built.experiment.sources
