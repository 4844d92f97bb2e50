"""What the labeling pages ask the store for, on real databases (a SQLite file and a PostgreSQL schema): the
reward model's uncertainty as a task priority (the pure function on hand-made numbers, then next_task's order),
reward scores at import, the next response to rate, who wrote which response, an annotator's progress, and the
rankings that inter-annotator agreement reads."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import text

from alignops.feedback.store import Store, StoreError, uncertainty

A, B, C = "models:/tiny-policy/1", "models:/tiny-policy/2", "models:/tiny-policy/3"
GOOD = {"helpful": 4, "correct": 4, "harmless": 5}


def _sql(store: Store, query: str) -> list[tuple]:
    with store._engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


def _rewards(store: Store) -> dict[tuple[str, str], float | None]:
    return {
        (uri, sid): reward for uri, sid, reward in _sql(store, "SELECT model_uri, sample_id, reward FROM responses")
    }


# ---------------------------------------------------------------------------------- uncertainty, by hand


def test_uncertainty_is_the_bradley_terry_entropy_in_bits() -> None:
    assert uncertainty([2.0, 2.0]) == pytest.approx(1.0)  # equal scores: a coin flip
    # r_a - r_b = ln 3: P(a beats b) = sigmoid(ln 3) = 3/4, entropy -(3/4 log2 3/4 + 1/4 log2 1/4) = 0.811278
    assert uncertainty([math.log(3), 0.0]) == pytest.approx(0.8112781245)
    assert uncertainty([0.0, math.log(3)]) == pytest.approx(0.8112781245)  # the order of the scores is no matter
    assert uncertainty([0.0, 1000.0]) == pytest.approx(0.0, abs=1e-12)  # sure, and no overflow
    assert uncertainty([0.0, 0.0, math.log(3)]) == pytest.approx((1.0 + 2 * 0.8112781245) / 3)  # mean over pairs
    assert uncertainty([0.0, 0.1]) > uncertainty([0.0, 1.0]) > uncertainty([5.0, 0.0])
    assert uncertainty([1.5]) is None and uncertainty([]) is None
    with pytest.raises(ValueError, match="NaN or infinity"):
        uncertainty([0.0, float("nan")])


# ------------------------------------------------------------------------ reward scores and task order


def test_import_stores_reward_scores_and_fills_in_missing_ones(store: Store) -> None:
    rows = [{"sample_id": "s0", "prompt": "p0", "completion": "a0", "reward": 0.25},
            {"sample_id": "s1", "prompt": "p1", "completion": "a1", "reward": None},
            {"sample_id": "s2", "prompt": "p2", "completion": "a2"}]  # fmt: skip
    assert store.import_samples(A, rows) == 3
    assert _rewards(store) == {(A, "s0"): 0.25, (A, "s1"): None, (A, "s2"): None}
    # imported again with scores: nothing added, the missing scores filled in, a stored score kept as it is
    rescored = [dict(row, reward=r) for row, r in zip(rows, [9.0, -1.5, 2], strict=True)]
    assert store.import_samples(A, rescored) == 0
    assert _rewards(store) == {(A, "s0"): 0.25, (A, "s1"): -1.5, (A, "s2"): 2.0}
    for bad in (float("nan"), float("inf"), "high", True):
        with pytest.raises(StoreError, match=r"samples\[0\] of models:/x/1: reward .* is not a finite number"):
            store.import_samples("models:/x/1", [{"sample_id": "s", "prompt": "p", "completion": "c", "reward": bad}])
    assert len(_rewards(store)) == 3


def _scored_prompts(store: Store) -> dict[str, int]:
    """Four prompts answered by A and B; the reward model scores the two answers close, apart, far apart, and
    not at all. Returns prompt text -> id."""
    gaps = {"close": 0.05, "apart": 1.0, "far apart": 6.0, "unscored": None}
    for uri, sign in ((A, 0), (B, 1)):
        store.import_samples(uri, [
            {"sample_id": name, "prompt": name, "completion": f"{uri} on {name}",
             "reward": None if gap is None else 0.3 + sign * gap}
            for name, gap in gaps.items()
        ])  # fmt: skip
    return {p: i for i, p in _sql(store, "SELECT id, text FROM prompts")}


def test_next_task_prefers_prompts_where_the_reward_model_is_least_certain(store: Store, add_annotators) -> None:
    prompts = _scored_prompts(store)
    ids = add_annotators(store, ["ann", "ben", "cat"])
    assert store.has_rewards()

    # ann, skipping along: least certain first, the unscored prompt last, whatever the seed
    order = []
    for n in range(4):
        task = store.next_task(ids["ann"], seed=n, prefer_uncertain=True)
        order.append(task.prompt)
        store.submit_ranking(ids["ann"], task.prompt_id, [], f"ann-{n}", skipped=True)
    assert order == ["close", "apart", "far apart", "unscored"]
    # without it, the order among equally ranked prompts is drawn at random
    assert len({store.next_task(ids["ben"], seed=n).prompt for n in range(20)}) > 1

    # the overlap comes first: once ben ranked "close", cat gets "close" too (2 labelers, the default overlap);
    # with an overlap of 1, fewest rankings comes first and cat gets "apart"
    task = store.next_task(ids["ben"], prefer_uncertain=True)
    shown = [r.id for r in task.responses]
    store.submit_ranking(ids["ben"], task.prompt_id, [[shown[0]], [shown[1]]], "ben-1", shown=shown)
    assert task.prompt == "close"
    assert store.next_task(ids["cat"], seed=0, prefer_uncertain=True).prompt == "close"
    assert store.next_task(ids["cat"], seed=0, prefer_uncertain=True, overlap=1).prompt == "apart"
    # an explicit priority of a prompt overrides its uncertainty (among prompts as far from the overlap)
    favourite = {prompts["unscored"]: 2.0}
    assert (
        store.next_task(ids["cat"], seed=0, priority=favourite, prefer_uncertain=True, overlap=1).prompt == "unscored"
    )


def test_has_rewards_is_false_until_a_score_arrives(store: Store, samples) -> None:
    assert not store.has_rewards()
    store.import_samples(A, samples(A, 2))
    assert not store.has_rewards()
    store.import_samples(A, [dict(samples(A, 1)[0], reward=0.5)])  # the same sample, now scored
    assert store.has_rewards()


# ------------------------------------------------------------------------------------------ rating tasks


def test_next_rating_task_offers_the_least_rated_response_even_of_a_ranked_prompt(
    store: Store, add_annotators, samples
) -> None:
    for uri in (A, B):
        store.import_samples(uri, samples(uri, 2))
    store.import_samples(C, [{"sample_id": "blank", "prompt": "prompt 0: say something", "completion": "  "}])
    ids = add_annotators(store, ["ann", "ben"])
    responses = dict(_sql(store, "SELECT id, text FROM responses WHERE text <> '  '"))

    # ann has ranked (or skipped) every prompt: there is still everything to rate
    while (task := store.next_task(ids["ann"])) is not None:
        store.submit_ranking(ids["ann"], task.prompt_id, [], f"skip-{task.prompt_id}", skipped=True)
    first = store.next_rating_task(ids["ann"], seed=0)
    assert first is not None and first.response.text == responses[first.response.id]
    assert first.prompt == _sql(store, f"SELECT p.text FROM prompts p JOIN responses r ON r.prompt_id = p.id "
                                       f"WHERE r.id = {first.response.id}")[0][0]  # fmt: skip
    assert store.next_rating_task(ids["ann"], seed=0) == first  # a seed fixes the draw

    # ben rates it: ann is offered one of the three nobody rated, never the blank answer
    store.submit_rating(ids["ben"], first.response.id, GOOD, "ben-1")
    offered = {store.next_rating_task(ids["ann"], seed=n).response.id for n in range(20)}
    assert offered == set(responses) - {first.response.id}

    # what she rated is never offered again (a correction neither); when all are rated, None
    rated = {}  # response id -> ann's rating of it
    while (task := store.next_rating_task(ids["ann"])) is not None:
        assert task.response.id not in rated
        rated[task.response.id] = store.submit_rating(ids["ann"], task.response.id, GOOD, f"ann-{task.response.id}")
    old = rated[first.response.id]
    store.submit_rating(ids["ann"], first.response.id, {**GOOD, "helpful": 1}, "fix", supersedes=old)
    assert set(rated) == set(responses) and store.next_rating_task(ids["ann"]) is None
    with pytest.raises(StoreError, match="no annotator with id 999"):
        store.next_rating_task(999)


def test_response_models_names_the_writer_of_each_response(store: Store, samples) -> None:
    for uri in (A, B, C):
        store.import_samples(uri, samples(uri, 2))
    truth = dict(_sql(store, "SELECT id, model_uri FROM responses"))
    ids = sorted(truth, reverse=True)
    assert store.response_models(ids) == {i: truth[i] for i in ids}
    assert list(store.response_models(ids)) == ids  # in the order asked
    assert store.response_models([]) == {}
    with pytest.raises(StoreError, match=r"no response with id\(s\) \[999\]"):
        store.response_models([ids[0], 999])


# ---------------------------------------------------------------------------------- progress, agreement


def test_progress_counts_one_annotators_current_labels(store: Store, add_annotators, samples) -> None:
    for uri in (A, B):
        store.import_samples(uri, samples(uri, 4))
    ids = add_annotators(store, ["ann", "ben"])
    ann = ids["ann"]
    assert store.progress(ann) == {"rankings": 0, "skipped": 0, "ratings": 0, "open_tasks": 4}

    task = store.next_task(ann, seed=0)
    r = [x.id for x in task.responses]
    first = store.submit_ranking(ann, task.prompt_id, [[r[0]], [r[1]]], "t1", shown=r)
    store.submit_ranking(ann, task.prompt_id, [[r[1]], [r[0]]], "t2", shown=r, supersedes=first)  # a correction
    store.submit_ranking(ann, store.next_task(ann).prompt_id, [], "t3", skipped=True)
    rating = store.submit_rating(ann, r[0], GOOD, "t4")
    store.submit_rating(ann, r[0], {**GOOD, "correct": 1}, "t5", supersedes=rating)
    store.submit_rating(ids["ben"], r[1], GOOD, "t6")  # someone else's label counts for them only

    progress = store.progress(ann)
    assert progress == {"rankings": 1, "skipped": 1, "ratings": 1, "open_tasks": 2}
    assert {k: progress[k] for k in ("rankings", "skipped", "ratings")} == store.counts()["by_annotator"]["ann"]
    assert store.open_tasks(ann) == 2 and store.progress(ids["ben"])["ratings"] == 1
    with pytest.raises(StoreError, match="no annotator with id 999"):
        store.progress(999)


def test_shared_rankings_are_the_prompts_two_annotators_ranked(store: Store, add_annotators, samples) -> None:
    for uri in (A, B):
        store.import_samples(uri, samples(uri, 3))
    ids = add_annotators(store, ["ann", "ben", "cat"])
    task = store.next_task(ids["ann"], seed=0)
    r = [x.id for x in task.responses]
    store.submit_ranking(ids["ann"], task.prompt_id, [[r[0]], [r[1]]], "a1", shown=r)
    alone = store.next_task(ids["ann"], seed=1)
    s = [x.id for x in alone.responses]
    store.submit_ranking(ids["ann"], alone.prompt_id, [[s[0]], [s[1]]], "a2", shown=s)  # nobody else ranks it
    assert store.shared_rankings() == []

    first = store.submit_ranking(ids["ben"], task.prompt_id, [[r[0], r[1]]], "b1", shown=r)
    store.submit_ranking(ids["ben"], task.prompt_id, [[r[1]], [r[0]]], "b2", shown=r, supersedes=first)
    store.submit_ranking(ids["cat"], task.prompt_id, [], "c1", skipped=True)  # a skip is no ranking
    shared = store.shared_rankings()
    assert [(rec["annotator"], rec["ranking"]) for rec in shared] == [("ann", [0, 1]), ("ben", [1, 0])]
    exported = [rec for rec in store.export_rankings()[0] if rec["prompt"] == task.prompt]
    assert shared == exported  # the same records as the export, of those prompts only
